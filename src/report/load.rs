//! Reading one run into a [`RunRecord`]: a run directory (`runs/<name>/`, docs/run-format.md),
//! with the trainer's own types ([`Summary`] and [`Meta`] for the JSON files, `jsonl` for the
//! log), or a modded-nanogpt text log (`textlog`).
use super::jsonl::{parse_log, ParsedLog};
use super::record::{read_log, RunRecord, Source, Status};
use super::textlog::load_text_log;
use crate::train::run_dir::{read_summary, Meta, RunStatus, Summary};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))
}

fn toml_str(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => format!("{f}"),
        other => other.to_string(),
    }
}

/// Key hyperparameters: the `lr`-like keys of the tables the run's optimizer actually uses (its own
/// `[optim.<name>]` table, plus `[optim.head]` for the matrix optimizers that put the tied
/// embedding/head on AdamW with it), then `steps` and `batch_tokens` from `[train]`.
fn key_hparams(config: &toml::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(optim) = config.get("optim").and_then(|o| o.as_table()) {
        if let Some(lr) = optim.get("lr") {
            out.push(("lr".to_string(), toml_str(lr)));
        }
        let main = optim
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .replace('-', "_");
        // Newton-Muon carries its head lr in its own table (`head_lr`); adamw has no head group.
        let mut groups = vec![main.clone()];
        if !matches!(main.as_str(), "adamw" | "newton_muon" | "") {
            groups.push("head".to_string());
        }
        for group in groups {
            if let Some(t) = optim.get(&group).and_then(|t| t.as_table()) {
                for (k, v) in t {
                    if k == "lr" || k.ends_with("_lr") || k.starts_with("lr_") {
                        out.push((format!("{group}.{k}"), toml_str(v)));
                    }
                }
            }
        }
    }
    if let Some(train) = config.get("train") {
        for k in ["steps", "batch_tokens"] {
            if let Some(v) = train.get(k) {
                out.push((k.to_string(), toml_str(v)));
            }
        }
    }
    out
}

/// The optional files of a run directory; a present file that does not parse is an error.
fn read_config(dir: &Path) -> Result<toml::Value> {
    let path = dir.join("config.toml");
    if !path.exists() {
        return Ok(toml::Value::Table(Default::default()));
    }
    let text = read(&path)?;
    toml::from_str(&text).map_err(|e| {
        anyhow!(
            "{}: malformed TOML: {}",
            path.display(),
            crate::toml_error(&text, &e)
        )
    })
}

fn read_meta(dir: &Path) -> Result<Meta> {
    let path = dir.join("meta.json");
    if !path.exists() {
        return Ok(Meta::default());
    }
    serde_json::from_str(&read(&path)?)
        .with_context(|| format!("{}: malformed JSON", path.display()))
}

/// A written string field, `None` when the file left it out (it defaults to empty).
fn given(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn toml_f64(v: &toml::Value) -> Option<f64> {
    v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
}

/// Read one run: a run directory, or a modded-nanogpt text log file.
pub fn load_run(path: &Path) -> Result<RunRecord> {
    if path.is_file() {
        let text = read_log(path)?;
        if !super::textlog::is_text_log(&text) {
            bail!(
                "{}: not a modded-nanogpt log (no `step:N/M val_loss:…` line)",
                path.display()
            );
        }
        return load_text_log(path, &text);
    }
    if !path.is_dir() {
        bail!("{}: not a directory", path.display());
    }
    load_run_dir(path)
}

/// Read one run directory. `config.toml`, `meta.json`, `log.jsonl` and `summary.json` are each
/// optional (a run that has just started, or crashed before writing one, still shows up), but
/// the directory must hold one of them, and a present file that does not parse is an error.
fn load_run_dir(dir: &Path) -> Result<RunRecord> {
    if !super::is_run_dir(dir) {
        bail!(
            "{}: not a run directory (no log.jsonl, summary.json or config.toml)",
            dir.display()
        );
    }
    let config = read_config(dir)?;
    let meta = read_meta(dir)?;
    let summary = read_summary(dir)?;
    let log_path = dir.join("log.jsonl");
    let ParsedLog {
        val,
        train,
        diverged_at: diverged,
        scalars,
        samples,
    } = if log_path.exists() {
        parse_log(&log_path, &read_log(&log_path)?)?
    } else {
        ParsedLog::default()
    };
    // A run is named by its directory (the trainer's `--name`); config.toml's `name` is the preset.
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let s = summary.as_ref();
    let status = status_of(
        dir,
        s,
        diverged.is_some(),
        !val.is_empty() || !train.is_empty(),
    )?;
    let optim = config
        .get("optim")
        .and_then(|o| o.get("name"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or(s.and_then(|s| given(&s.optim)))
        .unwrap_or_else(|| "?".to_string());
    let train_tbl = config.get("train");
    Ok(RunRecord {
        dir: dir.to_path_buf(),
        name,
        seed: config
            .get("seed")
            .and_then(|v| v.as_integer())
            .or(s.map(|s| s.seed as i64)),
        optim,
        hparams: key_hparams(&config),
        target_loss: train_tbl
            .and_then(|t| t.get("target_loss"))
            .and_then(toml_f64)
            .or(s.map(|s| s.target_loss)),
        batch_tokens: train_tbl
            .and_then(|t| t.get("batch_tokens"))
            .and_then(|v| v.as_integer())
            .map(|v| v as u64),
        config,
        device: given(&meta.device)
            .or(s.and_then(|s| given(&s.device)))
            .unwrap_or_else(|| "?".to_string()),
        precision: given(&meta.precision),
        git_commit: given(&meta.git_commit),
        val,
        train,
        finished: s.is_some_and(|s| s.finished),
        diverged_at: diverged.or(s.and_then(|s| s.diverged_at.map(|d| d as u64))),
        summary,
        source: Source::RunDir,
        scalars,
        samples,
        status,
    })
}

/// How a run directory stands: running while a trainer holds its lock, else as its summary
/// says; a summary that still says `running`, or none after records were logged, means the
/// trainer died without ending the run.
fn status_of(dir: &Path, s: Option<&Summary>, diverged: bool, logged: bool) -> Result<Status> {
    if crate::train::lock::probe(dir)?.is_some() {
        return Ok(Status::Running);
    }
    Ok(match s {
        _ if diverged || s.is_some_and(|s| s.diverged_at.is_some()) => Status::Diverged,
        Some(s) => match s.status {
            Some(RunStatus::Finished) => Status::Finished,
            Some(RunStatus::Diverged) => Status::Diverged,
            Some(RunStatus::Stopped) => Status::Stopped,
            Some(RunStatus::Interrupted) => Status::Interrupted,
            Some(RunStatus::Running) => Status::Crashed,
            None if s.finished => Status::Finished,
            None => Status::Ended,
        },
        None if logged => Status::Crashed,
        None => Status::NoData,
    })
}
