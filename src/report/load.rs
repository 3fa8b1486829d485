//! Reading one run into a [`RunRecord`]: a run directory (`runs/<name>/`, docs/run-format.md),
//! with the trainer's own types ([`Summary`] and [`Meta`] for the JSON files, `jsonl` for the
//! log), or a modded-nanogpt text log (`textlog`).
use super::jsonl::{parse_log, ParsedLog};
use super::textlog::load_text_log;
use crate::train::log::Sample;
use crate::train::run_dir::{read_summary, Meta, Summary};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// What the weights wrote at their step (`sample` records; none in a text log).
    pub samples: Vec<Sample>,
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

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// A log another process may be appending to: a read can end inside a multi-byte character,
/// so invalid UTF-8 is replaced rather than refused (the cut line is skipped by the parser).
pub(crate) fn read_log(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
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
    })
}
