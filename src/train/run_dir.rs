//! The files of one run directory besides checkpoints: `config.toml`, `meta.json`, `log.jsonl`,
//! `summary.json` (documented in docs/run-format.md; read back by `speedrun compare`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
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
    /// Processes of the run (`mpirun -np`; 1 without MPI).
    pub world_size: usize,
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
            world_size: 1,
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
    /// Passes the training data wrapped around to its first shard (0: every token read once at
    /// most).
    pub data_epochs: usize,
    /// Set when the run ended because its train loss stopped being finite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diverged_at: Option<usize>,
    pub device: String,
}

impl Summary {
    /// Finished, or ended for good by divergence: a rerun of a race leaves it alone.
    pub fn ended(&self) -> bool {
        self.finished || self.diverged_at.is_some()
    }
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

/// A run name is one plain path component under `--runs-dir`: not empty, not `.` or `..`, no
/// separators, no control characters. Anything else could write outside the runs directory or
/// into it as a whole.
pub fn check_name(name: &str) -> Result<()> {
    let bad = if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("is not a directory name")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    };
    match bad {
        Some(why) => bail!("run name {name:?} {why}; use letters, digits, '-', '_' or '.'"),
        None => Ok(()),
    }
}

/// The lock that makes one process the only writer of a run directory. Held for the life of the
/// value; the kernel releases it when the process dies, even under kill -9.
#[derive(Debug)]
pub struct RunLock {
    _file: fs::File,
}

impl RunLock {
    /// Lock `run_dir` (which must exist), recording this process's id in `.lock`.
    pub fn acquire(run_dir: &Path) -> Result<RunLock> {
        use std::io::{Seek, Write};
        let path = run_dir.join(".lock");
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        if let Err(e) = file.try_lock() {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return match e {
                fs::TryLockError::WouldBlock => bail!(
                    "{}: in use by another speedrun process (pid {}); wait for it to end or pick another --name",
                    run_dir.display(),
                    if holder.is_empty() { "unknown" } else { holder }
                ),
                fs::TryLockError::Error(e) => {
                    Err(e).with_context(|| format!("{}: cannot lock", path.display()))
                }
            };
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())
            .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(RunLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn run_names_are_one_plain_component() {
        for ok in ["muon-lr0.003-s0", "a_b", "x.y", "é"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/abs",
            "a/b",
            "a\\b",
            "new\nline",
            "tab\there",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
