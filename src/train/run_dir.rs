//! The files of one run directory besides checkpoints: `config.toml`, `meta.json`, `log.jsonl`,
//! `summary.json` (documented in docs/run-format.md; read back by `speedrun compare`).

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Static facts about a run, written once when it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// The run's headline numbers, refreshed at every validation and at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

/// Write `bytes` to `path` atomically (temp file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("{}: write failed", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("{}: fsync failed", tmp.display()))?;
    }
    fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot rename into place", path.display()))?;
    Ok(())
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
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
    let mut kept = String::new();
    for line in text.lines() {
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => continue, // a partial last line from a crash
        };
        let s = v.get("step").and_then(|s| s.as_u64()).unwrap_or(u64::MAX) as usize;
        if s <= step {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    write_atomic(path, kept.as_bytes())
}
