//! The files of one run directory besides checkpoints: `config.toml`, `meta.json`, `log.jsonl`,
//! `summary.json` (documented in docs/run-format.md; read back by `speedrun compare`), the
//! rules for run names, and what a fresh start may find in its directory.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

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
    /// How the run stands; absent in the summaries of older versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RunStatus>,
}

/// How a run stands, as its trainer last wrote it. `running` is written at every validation, so
/// a summary that still says it when no process holds the run's lock belongs to a run that died
/// (kill -9, a crash, a power loss).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    #[default]
    Running,
    Finished,
    /// Ended at `--stop-after`.
    Stopped,
    /// Ended by a signal (or a closed stdout), with a checkpoint.
    Interrupted,
    Diverged,
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

/// A run name is one plain file name under `--runs-dir` ([`crate::fsutil::check_name`]).
pub fn check_name(name: &str) -> Result<()> {
    crate::fsutil::check_name(name)
}

/// Files the trainer writes directly in a run directory (checkpoints go under `checkpoints/`).
const RUN_FILES: [&str; 5] = [
    "config.toml",
    "meta.json",
    "log.jsonl",
    "summary.json",
    ".lock",
];

/// Check that a new run may start in `run_dir`: it does not exist yet, or holds only what a start
/// of speedrun left before its first record (`.lock`, `config.toml`, `meta.json`, temporaries).
/// An earlier run (a log, a summary or checkpoints) is refused, unless `restart` (a `--resume`
/// that found no checkpoint starts the run over); a file speedrun did not write is always
/// refused, so nothing of the user's is overwritten. A live run is named by its PID.
pub fn check_fresh(run_dir: &Path, restart: bool) -> Result<()> {
    let shown = run_dir.display();
    let Ok(link) = fs::symlink_metadata(run_dir) else {
        return Ok(());
    };
    if link.file_type().is_symlink() && fs::metadata(run_dir).is_err() {
        let to = fs::read_link(run_dir).unwrap_or_default();
        bail!(
            "{shown}: is a symbolic link to {}, which does not exist; create that directory or pick another --name",
            to.display()
        );
    }
    if !run_dir.is_dir() {
        bail!("{shown}: exists and is not a directory; pick another --name");
    }
    super::lock::check_free(run_dir)?;
    check_contents(run_dir, restart)
}

/// The entries part of [`check_fresh`], for a process that holds the run's lock already (another
/// start may have written the directory since the first check).
pub fn check_contents(run_dir: &Path, restart: bool) -> Result<()> {
    let shown = run_dir.display();
    let entries = fs::read_dir(run_dir).with_context(|| format!("{shown}: cannot read"))?;
    let mut earlier_run = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("{shown}: cannot read"))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let earlier = match name.as_str() {
            "log.jsonl" | "summary.json" => true,
            "checkpoints" => check_checkpoints_dir(&path)?,
            "config.toml" if is_our_config(&path) => false,
            "meta.json" if is_our_meta(&path) => false,
            ".lock" => false,
            _ if is_our_temp(&name) => false,
            _ => bail!(
                "{shown}: holds {name:?}, which speedrun did not write; pick another --name or move it away (nothing was changed)"
            ),
        };
        if earlier {
            earlier_run.push(name);
        }
    }
    if !earlier_run.is_empty() && !restart {
        earlier_run.sort();
        bail!(
            "{shown}: holds an earlier run ({}); pass --resume to continue it or --name to start another",
            earlier_run.join(", ")
        );
    }
    Ok(())
}

/// Whether `checkpoints/` holds an earlier run's checkpoints; an error for anything in it that
/// speedrun did not write.
fn check_checkpoints_dir(dir: &Path) -> Result<bool> {
    if !dir.is_dir() || fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!(
            "{}: is not a directory that speedrun wrote; pick another --name",
            dir.display()
        );
    }
    let mut any = false;
    for e in fs::read_dir(dir).with_context(|| format!("{}: cannot read", dir.display()))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.starts_with("step_") {
            any = true;
        } else if !(name.starts_with(".tmp_") || name.starts_with(".old_")) {
            bail!(
                "{}: holds {name:?}, which speedrun did not write; pick another --name or move it away (nothing was changed)",
                dir.display()
            );
        }
    }
    Ok(any)
}

/// A `config.toml` as the trainer writes it: TOML with a preset `name` and the `[model]`,
/// `[train]` and `[optim]` tables (read loosely, so a config of another speedrun version counts).
fn is_our_config(path: &Path) -> bool {
    let Ok(text) = fs::read_to_string(path) else {
        return false;
    };
    let Ok(v) = toml::from_str::<toml::Table>(&text) else {
        return false;
    };
    v.get("name").is_some_and(|n| n.is_str())
        && ["model", "train", "optim"]
            .iter()
            .all(|k| v.get(*k).is_some_and(|t| t.is_table()))
}

/// A `meta.json` as the trainer writes it (it names the speedrun version).
fn is_our_meta(path: &Path) -> bool {
    let text = fs::read_to_string(path).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .is_ok_and(|v| v.get("speedrun_version").is_some_and(|x| x.is_string()))
}

/// A temporary file of [`crate::fsutil::write_atomic`] for one of the run's files
/// (`.NAME.tmpPID`), left by a writer that died mid-write.
fn is_our_temp(name: &str) -> bool {
    RUN_FILES.iter().any(|f| {
        name.strip_prefix('.')
            .and_then(|r| r.strip_prefix(f))
            .and_then(|r| r.strip_prefix(".tmp"))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_start_refuses_earlier_runs_and_foreign_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("r");
        check_fresh(&dir, false).unwrap();
        fs::create_dir(&dir).unwrap();
        check_fresh(&dir, false).unwrap();
        // What a start leaves before its first record is fine.
        let cfg = crate::train::config::load("shakespeare-tiny", &[]).unwrap();
        fs::write(dir.join("config.toml"), cfg.to_toml().unwrap()).unwrap();
        fs::write(dir.join("meta.json"), r#"{"speedrun_version":"0.1.0"}"#).unwrap();
        fs::write(dir.join(".config.toml.tmp123"), "half").unwrap();
        fs::write(dir.join(".lock"), "1").unwrap();
        fs::create_dir_all(dir.join("checkpoints/.tmp_step_000001_9")).unwrap();
        check_fresh(&dir, false).unwrap();
        // A user's own files are refused, by name.
        for (file, text) in [
            ("config.toml", "mine"),
            ("meta.json", "{}"),
            ("notes.txt", "x"),
        ] {
            let d = root.path().join(format!("f-{file}"));
            fs::create_dir(&d).unwrap();
            fs::write(d.join(file), text).unwrap();
            let e = check_fresh(&d, true).unwrap_err().to_string();
            assert!(e.contains(file) && e.contains("did not write"), "{e}");
        }
        // Checkpoints without a log are an earlier run.
        fs::create_dir_all(dir.join("checkpoints/step_000040")).unwrap();
        let e = check_fresh(&dir, false).unwrap_err().to_string();
        assert!(e.contains("earlier run (checkpoints)"), "{e}");
        fs::write(dir.join("summary.json"), "{}").unwrap();
        let e = check_fresh(&dir, false).unwrap_err().to_string();
        assert!(e.contains("earlier run (checkpoints, summary.json)"), "{e}");
        check_fresh(&dir, true).unwrap();
        // A dangling symlink and a file are named as such.
        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path().join("nowhere"), &link).unwrap();
        let e = check_fresh(&link, false).unwrap_err().to_string();
        assert!(e.contains("symbolic link") && e.contains("nowhere"), "{e}");
        let file = root.path().join("file");
        fs::write(&file, "x").unwrap();
        let e = check_fresh(&file, false).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
    }
}
