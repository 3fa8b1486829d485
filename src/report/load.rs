//! Reading one run directory (`runs/<name>/`) into a [`RunRecord`].
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
    pub step_ms: Option<f64>,
    pub train_time_ms: f64,
}

/// `summary.json`; every field optional because the trainer's schema may still move and a
/// refreshed-at-validation summary of a live run lacks the final fields.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Summary {
    pub name: Option<String>,
    pub optim: Option<String>,
    pub seed: Option<i64>,
    pub target_loss: Option<f64>,
    pub reached_target: Option<bool>,
    pub target_step: Option<u64>,
    pub target_tokens: Option<u64>,
    pub target_train_time_ms: Option<f64>,
    pub final_step: Option<u64>,
    pub final_val_loss: Option<f64>,
    pub final_train_time_ms: Option<f64>,
    pub step_avg_ms: Option<f64>,
    pub tok_per_s: Option<f64>,
    #[serde(default)]
    pub finished: bool,
    pub device: Option<String>,
}

/// Everything `compare` needs from one run directory.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub dir: PathBuf,
    /// `name` from config.toml, else the directory name.
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
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))
}

fn num(v: &serde_json::Value, key: &str) -> Option<f64> {
    v.get(key).and_then(|x| x.as_f64())
}

fn req_f64(v: &serde_json::Value, key: &str) -> Result<f64> {
    num(v, key).ok_or_else(|| anyhow!("missing or non-numeric \"{key}\""))
}

fn req_u64(v: &serde_json::Value, key: &str) -> Result<u64> {
    v.get(key)
        .and_then(|x| x.as_u64())
        .ok_or_else(|| anyhow!("missing or non-integer \"{key}\""))
}

/// A diverged run's loss is NaN, which serde_json (like Python's json with allow_nan=False)
/// writes as `null`: read `null` back as NaN, but a missing key is still an error.
fn loss_or_nan(v: &serde_json::Value, key: &str) -> Result<f64> {
    match v.get(key) {
        Some(serde_json::Value::Null) => Ok(f64::NAN),
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("nan") => Ok(f64::NAN),
        _ => req_f64(v, key),
    }
}

/// Parse `log.jsonl`. A last line that does not parse is the trainer mid-append and is skipped;
/// any other bad line is an error naming the file and line.
pub(crate) fn parse_log(path: &Path, text: &str) -> Result<(Vec<ValPoint>, Vec<TrainPoint>)> {
    let lines: Vec<&str> = text.lines().collect();
    let last_nonempty = lines.iter().rposition(|l| !l.trim().is_empty());
    let (mut val, mut train) = (Vec::new(), Vec::new());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if Some(i) == last_nonempty => break,
            Err(e) => bail!("{}:{}: malformed JSON: {e}", path.display(), i + 1),
        };
        let at = || format!("{}:{}", path.display(), i + 1);
        match v.get("kind").and_then(|k| k.as_str()) {
            Some("val") => {
                let p = (|| -> Result<ValPoint> {
                    Ok(ValPoint {
                        step: req_u64(&v, "step")?,
                        tokens: req_u64(&v, "tokens")?,
                        train_time_ms: req_f64(&v, "train_time_ms")?,
                        val_loss: loss_or_nan(&v, "val_loss")?,
                    })
                })()
                .with_context(|| format!("{}: bad val record", at()))?;
                val.push(p);
            }
            Some("train") => {
                let p = (|| -> Result<TrainPoint> {
                    Ok(TrainPoint {
                        step: req_u64(&v, "step")?,
                        loss: num(&v, "loss").unwrap_or(f64::NAN),
                        tokens: req_u64(&v, "tokens")?,
                        step_ms: num(&v, "step_ms"),
                        train_time_ms: num(&v, "train_time_ms").unwrap_or(0.0),
                    })
                })()
                .with_context(|| format!("{}: bad train record", at()))?;
                train.push(p);
            }
            // "target" duplicates the val record it came from: the target is recomputed from
            // the val records so that `--target` can move it. Unknown kinds are future
            // additions and are skipped.
            Some(_) => {}
            None => bail!("{}: record without a \"kind\" string", at()),
        }
    }
    Ok((val, train))
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

/// Read one run directory. Needs `log.jsonl` or `summary.json`; `config.toml` and `meta.json`
/// are optional (a run that crashed before writing them still shows up), but a present file
/// that does not parse is an error.
pub fn load_run(dir: &Path) -> Result<RunRecord> {
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    let cfg_path = dir.join("config.toml");
    let config: toml::Value = if cfg_path.exists() {
        toml::from_str(&read(&cfg_path)?)
            .map_err(|e| anyhow!("{}: malformed TOML: {}", cfg_path.display(), one_line(&e)))?
    } else {
        toml::Value::Table(Default::default())
    };
    let meta_path = dir.join("meta.json");
    let meta: serde_json::Value = if meta_path.exists() {
        serde_json::from_str(&read(&meta_path)?)
            .with_context(|| format!("{}: malformed JSON", meta_path.display()))?
    } else {
        serde_json::Value::Null
    };
    let sum_path = dir.join("summary.json");
    let summary: Option<Summary> = if sum_path.exists() {
        Some(
            serde_json::from_str(&read(&sum_path)?)
                .with_context(|| format!("{}: malformed summary", sum_path.display()))?,
        )
    } else {
        None
    };
    let log_path = dir.join("log.jsonl");
    let (val, train) = if log_path.exists() {
        parse_log(&log_path, &read(&log_path)?)?
    } else if summary.is_some() {
        (Vec::new(), Vec::new())
    } else {
        bail!(
            "{}: not a run directory (no log.jsonl or summary.json)",
            dir.display()
        );
    };

    let dir_name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let s = summary.clone().unwrap_or_default();
    // A run is named by its directory (the trainer's `--name`); config.toml's `name` is the preset.
    let name = dir_name;
    let seed = config.get("seed").and_then(|v| v.as_integer()).or(s.seed);
    let optim = config
        .get("optim")
        .and_then(|o| o.get("name"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or(s.optim.clone())
        .unwrap_or_else(|| "?".to_string());
    let train_tbl = config.get("train");
    let target_loss = train_tbl
        .and_then(|t| t.get("target_loss"))
        .and_then(toml_f64)
        .or(s.target_loss);
    let batch_tokens = train_tbl
        .and_then(|t| t.get("batch_tokens"))
        .and_then(|v| v.as_integer())
        .map(|v| v as u64);
    let meta_str = |k: &str| meta.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let device = meta_str("device")
        .or(s.device.clone())
        .unwrap_or_else(|| "?".to_string());
    Ok(RunRecord {
        dir: dir.to_path_buf(),
        name,
        seed,
        optim,
        hparams: key_hparams(&config),
        config,
        device,
        precision: meta_str("precision"),
        git_commit: meta_str("git_commit"),
        target_loss,
        batch_tokens,
        val,
        train,
        finished: s.finished,
        summary,
    })
}

fn toml_f64(v: &toml::Value) -> Option<f64> {
    v.as_float().or_else(|| v.as_integer().map(|i| i as f64))
}

/// toml's errors span several lines (with a source excerpt); keep the first for a one-line error.
fn one_line(e: &impl std::fmt::Display) -> String {
    let s = e.to_string();
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
