//! One row per run: the numbers of the comparison table, recomputed from `log.jsonl` so that a
//! moved target (`--target`) and the table always agree with the log they came from.
use super::record::{RunRecord, Status, TrainPoint, UNTIMED_STEPS};
use serde::Serialize;

/// One row of the comparison table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunRow {
    pub name: String,
    pub dir: String,
    pub optim: String,
    pub seed: Option<i64>,
    /// Key hyperparameters, `k=v` joined by "; ".
    pub hparams: String,
    pub device: String,
    /// The target used for this row (`--target`, else the run's own).
    pub target: Option<f64>,
    pub reached: bool,
    pub target_step: Option<u64>,
    pub target_tokens: Option<u64>,
    pub target_train_time_ms: Option<f64>,
    pub final_step: Option<u64>,
    pub final_val_loss: Option<f64>,
    pub step_avg_ms: Option<f64>,
    pub tok_per_s: Option<f64>,
    pub finished: bool,
    /// The step after which the run's loss stopped being finite.
    pub diverged_at: Option<u64>,
    /// The run has written no record yet.
    pub no_data: bool,
    pub status: Status,
}

/// The first and last train records past the untimed warm-up, when time advanced between them.
fn timed_span(train: &[TrainPoint]) -> Option<(&TrainPoint, &TrainPoint)> {
    let mut timed = train.iter().filter(|t| t.step > UNTIMED_STEPS);
    let a = timed.next()?;
    let b = timed.next_back()?;
    (b.step > a.step && b.train_time_ms > a.train_time_ms).then_some((a, b))
}

/// (step average in ms, tokens per second) of a run.
fn throughput(run: &RunRecord) -> (Option<f64>, Option<f64>) {
    let summary = run.summary.as_ref();
    // Averages over the timed span: Δtrain_time / Δstep between the first and last train
    // records past the untimed warm-up. Exact even when the trainer logs every N steps.
    let span = timed_span(&run.train);
    let step_avg_ms = match span {
        Some((a, b)) => Some((b.train_time_ms - a.train_time_ms) / (b.step - a.step) as f64),
        None if run.train.is_empty() => summary.map(|s| s.step_avg_ms),
        None => {
            let n = run.train.len() as f64;
            Some(run.train.iter().map(|t| t.step_ms).sum::<f64>() / n)
        }
    };
    let tok_per_s = match span {
        Some((a, b)) if b.tokens > a.tokens && a.tokens.is_some() => {
            let dt = b.tokens.unwrap_or(0) - a.tokens.unwrap_or(0);
            Some(dt as f64 * 1000.0 / (b.train_time_ms - a.train_time_ms))
        }
        _ => match (run.batch_tokens, step_avg_ms) {
            (Some(bt), Some(ms)) if ms > 0.0 => Some(bt as f64 * 1000.0 / ms),
            _ => summary.map(|s| s.tok_per_s),
        },
    };
    (step_avg_ms, tok_per_s)
}

impl RunRow {
    pub fn from_run(run: &RunRecord, target_override: Option<f64>) -> RunRow {
        let target = target_override.or(run.target_loss);
        let summary = run.summary.as_ref();
        // Interpolation-free, as the record's rule: the first validation at or below target.
        let hit = target.and_then(|t| run.val.iter().find(|v| v.val_loss <= t));
        let last_val = run.val.last();
        let final_step = run
            .train
            .last()
            .map(|t| t.step)
            .max(last_val.map(|v| v.step))
            .or(summary.map(|s| s.final_step as u64));
        let (step_avg_ms, tok_per_s) = throughput(run);
        RunRow {
            name: run.name.clone(),
            dir: run.dir.display().to_string(),
            optim: run.optim.clone(),
            seed: run.seed,
            hparams: run
                .hparams
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
            device: run.device.clone(),
            target,
            reached: hit.is_some(),
            target_step: hit.map(|v| v.step),
            target_tokens: hit.and_then(|v| v.tokens),
            target_train_time_ms: hit.map(|v| v.train_time_ms),
            final_step,
            final_val_loss: last_val
                .map(|v| v.val_loss)
                .or(summary.and_then(|s| s.final_val_loss)),
            step_avg_ms,
            tok_per_s,
            finished: run.finished,
            diverged_at: run.diverged_at,
            no_data: !run.has_data(),
            status: run.status,
        }
    }
}

/// Rows for all runs, in input order.
pub fn run_rows(runs: &[RunRecord], target: Option<f64>) -> Vec<RunRow> {
    runs.iter().map(|r| RunRow::from_run(r, target)).collect()
}

/// The common target of the rows (the override, or the runs' own when they agree).
pub fn common_target(rows: &[RunRow]) -> Option<f64> {
    let first = rows.first()?.target?;
    rows.iter()
        .all(|r| r.target == Some(first))
        .then_some(first)
}
