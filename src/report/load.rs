//! Reading one run directory (`runs/<name>/`, docs/run-format.md) into a [`RunRecord`], with the
//! trainer's own types: [`Record`] for `log.jsonl`, [`Summary`] and [`Meta`] for the JSON files.
use crate::train::log::Record;
use crate::train::run_dir::{read_summary, Meta, Summary};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One `{"kind":"val",…}` record of `log.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValPoint {
    /// Optimizer steps completed when the validation ran.
    pub step: u64,
    /// Training tokens seen.
    pub tokens: u64,
    /// Record-4 clock: excludes validation and the first 10 steps.
    pub train_time_ms: f64,
    pub val_loss: f64,
}

/// One `{"kind":"train",…}` record of `log.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainPoint {
    pub step: u64,
    pub loss: f64,
    pub tokens: u64,
    pub step_ms: f64,
    pub train_time_ms: f64,
}

/// Everything `compare` needs from one run directory.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub dir: PathBuf,
    /// The directory name (the trainer's `--name`).
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
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// The `kind` of a log line, read before the full [`Record`] so that kinds this reader does not
/// know (later additions to the log) can be skipped.
#[derive(Deserialize)]
struct KindOf {
    #[serde(default)]
    kind: serde_json::Value,
}

/// What `compare` takes from `log.jsonl`.
#[derive(Debug, Default)]
pub(crate) struct ParsedLog {
    pub val: Vec<ValPoint>,
    pub train: Vec<TrainPoint>,
    pub diverged_at: Option<u64>,
}

/// Parse `log.jsonl`. A last line that is not JSON is the trainer mid-append and is skipped;
/// any other bad line is an error naming the file and line.
pub(crate) fn parse_log(path: &Path, text: &str) -> Result<ParsedLog> {
    let lines: Vec<&str> = text.lines().collect();
    let last_nonempty = lines.iter().rposition(|l| !l.trim().is_empty());
    let mut log = ParsedLog::default();
    let (val, train, diverged) = (&mut log.val, &mut log.train, &mut log.diverged_at);
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let kind = match serde_json::from_str::<KindOf>(line) {
            Ok(k) => k.kind,
            Err(e) if e.is_data() => serde_json::Value::Null,
            Err(_) if Some(i) == last_nonempty => break,
            Err(e) => bail!("{}: malformed JSON: {e}", at()),
        };
        let kind = match kind.as_str() {
            Some(k @ ("train" | "val" | "target" | "diverged")) => k,
            // Kinds added to the log later are skipped.
            Some(_) => continue,
            None => bail!("{}: record without a \"kind\" string", at()),
        };
        let record: Record =
            serde_json::from_str(line).with_context(|| format!("{}: bad {kind} record", at()))?;
        match record {
            Record::Val {
                step,
                val_loss,
                tokens,
                train_time_ms,
            } => val.push(ValPoint {
                step: step as u64,
                tokens,
                train_time_ms,
                val_loss,
            }),
            Record::Train {
                step,
                loss,
                tokens,
                step_ms,
                train_time_ms,
                ..
            } => train.push(TrainPoint {
                step: step as u64,
                loss,
                tokens,
                step_ms,
                train_time_ms,
            }),
            // "target" duplicates the val record it came from: the target is recomputed from
            // the val records so that `--target` can move it. Diagnostics are not compared.
            Record::Diverged { step, .. } => *diverged = Some(step as u64),
            Record::Target { .. } | Record::Optim { .. } | Record::Epoch { .. } => {}
        }
    }
    Ok(log)
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
    toml::from_str(&read(&path)?).map_err(|e| {
        anyhow!(
            "{}: malformed TOML: {}",
            path.display(),
            crate::one_line(&e.to_string())
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

/// Read one run directory. Needs `log.jsonl` or `summary.json`; `config.toml` and `meta.json`
/// are optional (a run that crashed before writing them still shows up), but a present file
/// that does not parse is an error.
pub fn load_run(dir: &Path) -> Result<RunRecord> {
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    let config = read_config(dir)?;
    let meta = read_meta(dir)?;
    let summary = read_summary(dir)?;
    let log_path = dir.join("log.jsonl");
    let ParsedLog {
        val,
        train,
        diverged_at: diverged,
    } = if log_path.exists() {
        parse_log(&log_path, &read(&log_path)?)?
    } else if summary.is_some() {
        ParsedLog::default()
    } else {
        bail!(
            "{}: not a run directory (no log.jsonl or summary.json)",
            dir.display()
        );
    };
    // A run is named by its directory (the trainer's `--name`); config.toml's `name` is the preset.
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let s = summary.as_ref();
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
    })
}
