//! The files of one run directory besides checkpoints: `config.toml`, `meta.json`, `log.jsonl`,
//! `summary.json` (documented in docs/run-format.md; read back by `speedrun compare`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::log::Record;

/// Static facts about a run, written once when it starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    pub git_commit: String,
    pub device: String,
    pub precision: String,
    pub started: String,
    pub speedrun_version: String,
    pub command: String,
}

impl Meta {
    pub fn new(device: String, precision: String) -> Self {
        Meta {
            git_commit: env!("SPEEDRUN_GIT_COMMIT").to_string(),
            device,
            precision,
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            speedrun_version: env!("CARGO_PKG_VERSION").to_string(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }
}

/// The run's headline numbers, refreshed at every validation and at the end; `speedrun compare`
/// reads it back with this type. Every field defaults, so an older or partial file still reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    pub name: String,
    pub optim: String,
    pub seed: u64,
    pub target_loss: f64,
    pub reached_target: bool,
    pub target_step: Option<usize>,
    pub target_tokens: Option<u64>,
    pub target_train_time_ms: Option<f64>,
    pub final_step: usize,
    pub final_val_loss: Option<f64>,
    pub final_train_time_ms: f64,
    pub step_avg_ms: f64,
    pub tok_per_s: f64,
    pub finished: bool,
    pub device: String,
}

pub fn read_summary(run_dir: &Path) -> Result<Option<Summary>> {
    let p = run_dir.join("summary.json");
    if !p.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(&p).with_context(|| format!("{}: cannot read", p.display()))?;
    let s = serde_json::from_str(&text)
        .with_context(|| format!("{}: malformed summary", p.display()))?;
    Ok(Some(s))
}

/// Keep only the log records a resume from `step` will not write again: train records up to `step`
/// and validation/target records up to `step` (validation at `step` ran before that checkpoint).
pub fn truncate_log(path: &Path, step: usize) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let text =
        fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    #[derive(Deserialize)]
    struct StepOf {
        step: usize,
    }
    let mut kept = String::new();
    for line in text.lines() {
        // A line that does not parse is a partial last line from a crash: dropped.
        match serde_json::from_str::<StepOf>(line) {
            Ok(r) if r.step <= step => {
                kept.push_str(line);
                kept.push('\n');
            }
            _ => {}
        }
    }
    crate::fsutil::write_atomic(path, kept.as_bytes())
}

/// The values of the last `optim` record of a log (empty when there is none): a resumed run
/// writes diagnostics only where they change from these, as the straight run did.
pub fn last_diagnostics(path: &Path) -> BTreeMap<String, f64> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .rev()
        .find_map(|l| match serde_json::from_str::<Record>(l) {
            Ok(Record::Optim { values, .. }) => Some(values),
            _ => None,
        })
        .unwrap_or_default()
}
