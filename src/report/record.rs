//! What `compare` knows about one run once it is read ([`RunRecord`] and its points), and the
//! one reader of a log that may still be growing. The bottom of the report: it imports nothing
//! of it, and every reader (`load`, `jsonl`, `textlog`) and every stage above uses it.
use crate::train::run_dir::Summary;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The record-4 clock starts after this many steps (their time is compilation and warm-up),
/// so step-time averages only use train records past it.
pub const UNTIMED_STEPS: u64 = 10;

/// Scalar series of a run besides its losses, by tag (`lr/<group>`, `optim/<name>`,
/// `time/comm_ms`), each as (step, value) in log order. Generic so that every renderer that
/// shows "all scalars" (the TensorBoard export, the HTML page) takes a new family without change.
pub type Scalars = BTreeMap<String, Vec<(u64, f64)>>;

/// One `{"kind":"val",…}` record of `log.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValPoint {
    /// Optimizer steps completed when the validation ran.
    pub step: u64,
    /// Training tokens seen (`None` when a text log does not give the batch size).
    pub tokens: Option<u64>,
    /// Record-4 clock: excludes validation and the first 10 steps.
    pub train_time_ms: f64,
    pub val_loss: f64,
}

/// One `{"kind":"train",…}` record of `log.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainPoint {
    pub step: u64,
    /// The run's train loss: speedrun's mean over the step's micro-batches, a text log's own.
    pub loss: f64,
    /// Rank 0's loss on its last loader call of the step, the number the records log (a text
    /// log's `train_loss`; absent in run logs written before speedrun logged it).
    pub loss_rank0_last: Option<f64>,
    pub tokens: Option<u64>,
    pub step_ms: f64,
    pub train_time_ms: f64,
}

/// What a run was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A run directory the trainer wrote.
    RunDir,
    /// A modded-nanogpt text log.
    TextLog,
}

/// How a run stands, as `compare` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A trainer holds the run's lock (or a text log that has not reached its last step).
    Running,
    Finished,
    Diverged,
    /// Ended at `--stop-after`.
    Stopped,
    /// Ended by a signal, with a checkpoint.
    Interrupted,
    /// No process holds it, and it never said how it ended (kill -9, a crash, a power loss).
    Crashed,
    /// Not running, and its summary (of an older version) does not say how it ended.
    Ended,
    /// Nothing logged yet.
    NoData,
}

impl Status {
    /// The words of the table's status column (a diverged run adds its step).
    pub fn words(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Diverged => "diverged",
            Status::Stopped => "stopped",
            Status::Interrupted => "interrupted",
            Status::Crashed => "crashed",
            Status::Ended => "not running",
            Status::NoData => "no data yet",
        }
    }
}

/// Everything `compare` needs from one run.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The run directory, or the text log file.
    pub dir: PathBuf,
    /// The directory name (the trainer's `--name`), or the text log's file stem.
    pub name: String,
    pub seed: Option<i64>,
    /// `[optim] name`, else `summary.optim`, else "?".
    pub optim: String,
    /// Key hyperparameters as (key, value) pairs: optimizer lr(s), steps, batch tokens.
    pub hparams: Vec<(String, String)>,
    /// The full resolved config (used to group runs that differ only in seed).
    pub config: toml::Value,
    pub device: String,
    pub precision: Option<String>,
    pub git_commit: Option<String>,
    /// The run's own target (`[train] target_loss`, else `summary.target_loss`).
    pub target_loss: Option<f64>,
    pub batch_tokens: Option<u64>,
    pub val: Vec<ValPoint>,
    pub train: Vec<TrainPoint>,
    pub summary: Option<Summary>,
    /// True when `summary.json` says the run finished.
    pub finished: bool,
    /// The step after which the train loss stopped being finite (the run ended there).
    pub diverged_at: Option<u64>,
    pub source: Source,
    pub scalars: Scalars,
    pub status: Status,
    /// What the weights wrote at their step (`sample` records; none in a text log).
    pub samples: Vec<crate::train::log::Sample>,
}

impl RunRecord {
    /// False for a run that has written nothing to compare yet (shown as "no data yet").
    pub fn has_data(&self) -> bool {
        !self.val.is_empty() || !self.train.is_empty() || self.summary.is_some()
    }

    /// Every scalar of a run by tag: `loss/train`, `loss/val`, `tokens`, `time/train_time_s`,
    /// `time/step_ms`, then the log's other families as loaded (`lr/<group>`, `optim/<name>`, …).
    pub fn all_scalars(&self) -> Scalars {
        let run = self;
        let mut out = run.scalars.clone();
        let mut put = |tag: &str, pts: Vec<(u64, f64)>| {
            if !pts.is_empty() {
                out.insert(tag.to_string(), pts);
            }
        };
        put(
            "loss/train",
            run.train.iter().map(|t| (t.step, t.loss)).collect(),
        );
        put(
            "loss/val",
            run.val.iter().map(|v| (v.step, v.val_loss)).collect(),
        );
        put(
            "tokens",
            run.train
                .iter()
                .filter_map(|t| Some((t.step, t.tokens? as f64)))
                .collect(),
        );
        put(
            "time/train_time_s",
            run.train
                .iter()
                .map(|t| (t.step, t.train_time_ms / 1000.0))
                .collect(),
        );
        put(
            "time/step_ms",
            run.train
                .iter()
                .filter(|t| t.step_ms.is_finite() && t.step_ms > 0.0)
                .map(|t| (t.step, t.step_ms))
                .collect(),
        );
        out
    }
}

/// A log another process may be appending to: a read can end inside a multi-byte character,
/// so invalid UTF-8 is replaced rather than refused (the cut line is skipped by the parser).
pub(crate) fn read_log(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
