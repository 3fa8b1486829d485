//! Per-run numbers (recomputed from `log.jsonl`) and the markdown / csv / json renderings.
use super::load::RunRecord;
use super::stats::{self, Comparison, GroupStats};
use super::{CompareOpts, Format};
use serde::Serialize;
use std::fmt::Write;

/// The record-4 clock starts after this many steps (their time is compilation and warm-up),
/// so step-time averages only use train records past it.
pub const UNTIMED_STEPS: u64 = 10;

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
}

impl RunRow {
    pub fn from_run(run: &RunRecord, target_override: Option<f64>) -> RunRow {
        let target = target_override.or(run.target_loss);
        let s = run.summary.clone().unwrap_or_default();
        // Interpolation-free, as the record's rule: the first validation at or below target.
        let hit = target.and_then(|t| run.val.iter().find(|v| v.val_loss <= t));
        let last_val = run.val.last();
        let final_step = run
            .train
            .last()
            .map(|t| t.step)
            .max(last_val.map(|v| v.step))
            .or(s.final_step);
        // Averages over the timed span: Δtrain_time / Δstep between the first and last train
        // records past the untimed warm-up. Exact even when the trainer logs every N steps.
        let timed: Vec<_> = run
            .train
            .iter()
            .filter(|t| t.step > UNTIMED_STEPS)
            .collect();
        let span = match (timed.first(), timed.last()) {
            (Some(a), Some(b)) if b.step > a.step && b.train_time_ms > a.train_time_ms => {
                Some((a, b))
            }
            _ => None,
        };
        let step_avg_ms = match span {
            Some((a, b)) => Some((b.train_time_ms - a.train_time_ms) / (b.step - a.step) as f64),
            None => {
                let ms: Vec<f64> = run.train.iter().filter_map(|t| t.step_ms).collect();
                if ms.is_empty() {
                    s.step_avg_ms
                } else {
                    Some(ms.iter().sum::<f64>() / ms.len() as f64)
                }
            }
        };
        let tok_per_s = match span {
            Some((a, b)) if b.tokens > a.tokens => {
                Some((b.tokens - a.tokens) as f64 * 1000.0 / (b.train_time_ms - a.train_time_ms))
            }
            _ => match (run.batch_tokens, step_avg_ms) {
                (Some(bt), Some(ms)) if ms > 0.0 => Some(bt as f64 * 1000.0 / ms),
                _ => s.tok_per_s,
            },
        };
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
            target_tokens: hit.map(|v| v.tokens),
            target_train_time_ms: hit.map(|v| v.train_time_ms),
            final_step,
            final_val_loss: last_val.map(|v| v.val_loss).or(s.final_val_loss),
            step_avg_ms,
            tok_per_s,
            finished: run.finished,
        }
    }
}

/// Rows for all runs, in input order.
pub fn run_rows(runs: &[RunRecord], target: Option<f64>) -> Vec<RunRow> {
    runs.iter().map(|r| RunRow::from_run(r, target)).collect()
}

const HEADER: [&str; 12] = [
    "run",
    "optimizer",
    "hyperparameters",
    "device",
    "steps to target",
    "tokens to target",
    "time to target (s)",
    "final step",
    "final val loss",
    "step avg (ms)",
    "tok/s",
    "status",
];

const NOT_REACHED: &str = "not reached";

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".to_string())
}

/// Human cells (markdown / html); not-reached runs are marked, not dropped.
pub(crate) fn human_cells(r: &RunRow) -> Vec<String> {
    let tgt = |s: String| {
        if r.reached {
            s
        } else {
            NOT_REACHED.to_string()
        }
    };
    vec![
        r.name.clone(),
        r.optim.clone(),
        r.hparams.clone(),
        r.device.clone(),
        tgt(opt(r.target_step, |v| v.to_string())),
        tgt(opt(r.target_tokens, |v| v.to_string())),
        tgt(opt(r.target_train_time_ms, |v| {
            format!("{:.1}", v / 1000.0)
        })),
        opt(r.final_step, |v| v.to_string()),
        opt(r.final_val_loss, |v| format!("{v:.4}")),
        opt(r.step_avg_ms, |v| format!("{v:.1}")),
        opt(r.tok_per_s, |v| format!("{v:.0}")),
        if r.finished { "finished" } else { "running" }.to_string(),
    ]
}

pub(crate) fn header() -> &'static [&'static str] {
    &HEADER
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The common target of the rows (the override, or the runs' own when they agree).
pub fn common_target(rows: &[RunRow]) -> Option<f64> {
    let first = rows.first()?.target?;
    rows.iter()
        .all(|r| r.target == Some(first))
        .then_some(first)
}

fn render_markdown(rows: &[RunRow], groups: &[GroupStats], cmps: &[Comparison]) -> String {
    let mut out = String::new();
    match common_target(rows) {
        Some(t) => writeln!(out, "Target val loss: {t}\n").unwrap(),
        None => writeln!(out, "Target val loss: per run (see json)\n").unwrap(),
    }
    writeln!(out, "| {} |", HEADER.join(" | ")).unwrap();
    writeln!(out, "|{}", "---|".repeat(HEADER.len())).unwrap();
    for r in rows {
        let cells: Vec<String> = human_cells(r).iter().map(|c| md_escape(c)).collect();
        writeln!(out, "| {} |", cells.join(" | ")).unwrap();
    }
    if !groups.is_empty() {
        out.push('\n');
        out.push_str(&stats::render_markdown(groups, cmps));
    }
    out
}

/// Machine cells: raw numbers (ms, not s), empty when absent; `reached` says whether the
/// target columns are meaningful.
fn csv_render(rows: &[RunRow]) -> String {
    let mut out = String::from(
        "run,dir,optimizer,seed,hyperparameters,device,target,reached,steps_to_target,\
         tokens_to_target,train_time_to_target_ms,final_step,final_val_loss,step_avg_ms,\
         tok_per_s,finished\n",
    );
    let o = |v: Option<String>| v.unwrap_or_default();
    for r in rows {
        let cells = [
            csv_field(&r.name),
            csv_field(&r.dir),
            csv_field(&r.optim),
            o(r.seed.map(|v| v.to_string())),
            csv_field(&r.hparams),
            csv_field(&r.device),
            o(r.target.map(|v| v.to_string())),
            r.reached.to_string(),
            o(r.target_step.map(|v| v.to_string())),
            o(r.target_tokens.map(|v| v.to_string())),
            o(r.target_train_time_ms.map(|v| v.to_string())),
            o(r.final_step.map(|v| v.to_string())),
            o(r.final_val_loss.map(|v| v.to_string())),
            o(r.step_avg_ms.map(|v| v.to_string())),
            o(r.tok_per_s.map(|v| v.to_string())),
            r.finished.to_string(),
        ];
        writeln!(out, "{}", cells.join(",")).unwrap();
    }
    out
}

#[derive(Serialize)]
struct JsonReport<'a> {
    target: Option<f64>,
    runs: &'a [RunRow],
    groups: &'a [GroupStats],
    comparisons: &'a [Comparison],
}

/// Render loaded runs in the requested format.
pub fn render(runs: &[RunRecord], opts: &CompareOpts) -> String {
    let rows = run_rows(runs, opts.target);
    let groups = stats::group_stats(runs, &rows);
    let cmps = stats::compare_groups(&groups);
    match opts.format {
        Format::Markdown => render_markdown(&rows, &groups, &cmps),
        Format::Csv => csv_render(&rows),
        Format::Json => {
            let rep = JsonReport {
                target: common_target(&rows),
                runs: &rows,
                groups: &groups,
                comparisons: &cmps,
            };
            // Serializing plain structs of numbers and strings cannot fail; NaN becomes null.
            serde_json::to_string_pretty(&rep).expect("report serializes") + "\n"
        }
    }
}
