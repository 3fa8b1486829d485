//! Run configuration: TOML presets in `configs/` plus `--set key=value` overrides.
//!
//! A preset is found by path, or by name in `./configs/NAME.toml`, or among the presets compiled into
//! the binary (so `speedrun train` works from any directory).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::GptConfig;
use crate::one_line;
use crate::optim::OptimConfig;

/// Presets shipped inside the binary: (name, TOML text).
pub const BUILTIN_PRESETS: &[(&str, &str)] = &[
    (
        "shakespeare-tiny",
        include_str!("../../configs/shakespeare-tiny.toml"),
    ),
    (
        "tinystories-small",
        include_str!("../../configs/tinystories-small.toml"),
    ),
    (
        "speedrun-124m",
        include_str!("../../configs/speedrun-124m.toml"),
    ),
    ("track3", include_str!("../../configs/track3.toml")),
    (
        "track3-tiny",
        include_str!("../../configs/track3-tiny.toml"),
    ),
];

/// The preset the README's main command trains.
pub const DEFAULT_PRESET: &str = "shakespeare-tiny";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Preset name; the default run name is built from it.
    pub name: String,
    /// Seed of the weight init (the data order is fixed, as in the record).
    #[serde(default)]
    pub seed: u64,
    pub model: GptConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub optim: OptimConfig,
    /// Where relative `[data]` paths are taken from (`--data-dir`; None: `$SPEEDRUN_DATA`, else
    /// the current directory). Not part of the saved config: the same run can be resumed from
    /// another directory.
    #[serde(skip)]
    pub data_root: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Train shards: a directory, a file or a glob (sorted order).
    pub train: String,
    /// Validation shards (the loader restarts at their start for every evaluation).
    pub val: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Tokens per optimizer step (record 4: 524,288 = 512 sequences × 1024).
    pub batch_tokens: usize,
    /// Data-parallel ranks whose data order a step reproduces (record 4: 8 GPUs). Each step reads one
    /// window of `batch_tokens / ranks` tokens per rank, in the record's per-rank order; one process
    /// splits each window into micro-batches and accumulates gradients.
    #[serde(default = "default_ranks")]
    pub ranks: usize,
    /// Sequences per micro-batch (must divide `device_batch`).
    pub micro_batch: usize,
    /// Sequences of one rank's loader call, the reference's `device_batch_size` (0: the whole
    /// rank window, one call per rank and step as in record 4). A rank's window of a step is
    /// `rank window / device_batch` consecutive calls, each advancing by the record's rule
    /// (docs/data.md, "Token order"). Left out of the saved config when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub device_batch: usize,
    /// Train each rank's first loader call twice, as record 4 and NM-1 do (they fetch a batch
    /// before the clock, reset the loader and train on the held batch before fetching the next:
    /// docs/data.md, "The repeated first batch"). Left out of the saved config when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub repeat_first_batch: bool,
    /// The token order: record 4's per-rank loader ("record4") or Track 3's generator
    /// ("track3": one shared position, the next shard when pos + batch + 1 >= its length;
    /// docs/data.md). Left out of the saved config when "record4".
    #[serde(default, skip_serializing_if = "crate::model::arch::is_default")]
    pub loader: LoaderKind,
    /// Total optimizer steps (record 4: 6200).
    pub steps: usize,
    /// Linear warmup steps (record 4: 0).
    #[serde(default)]
    pub warmup_steps: usize,
    /// Linear warmdown to 0 over the last steps (record 4: 1800).
    pub warmdown_steps: usize,
    /// Validate every this many steps, and at the last step (record 4: 125).
    pub val_every: usize,
    /// Validate every this many steps once `step/steps` ≥ `val_late_frac` (Track 3: 25 after
    /// 90% of the run); 0: `val_every` throughout. Left out of the saved config when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub val_every_late: usize,
    /// Where the late validation cadence starts, as a fraction of the run.
    #[serde(
        default = "default_late_frac",
        skip_serializing_if = "is_default_late_frac"
    )]
    pub val_late_frac: f64,
    /// Track 3's schedule when > 0: the lr falls linearly to 0 over the last `cooldown_frac` of
    /// the run (train_gpt_simple.py:301-310), instead of over `warmdown_steps`. Left out of the
    /// saved config when 0.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub cooldown_frac: f64,
    /// Validation budget in tokens from the start of the val shards (record 4: 10,485,760).
    pub val_tokens: usize,
    /// Sequences per validation micro-batch (0: same as `micro_batch`).
    #[serde(default)]
    pub val_micro_batch: usize,
    /// The val loss to reach (record 4: 3.28).
    pub target_loss: f64,
    /// Checkpoint every this many steps (0: only at the end).
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Keep the newest K checkpoints.
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    /// Print a train line every this many steps (the JSONL log gets every step).
    #[serde(default = "default_log_every")]
    pub log_every: usize,
    /// Write the optimizer diagnostics (a `diag` record, docs/diagnostics.md) for every step whose
    /// number is a multiple of this; 0: none. Left out of the saved config when 0, so the resume
    /// hash of runs from before the field existed is unchanged.
    #[serde(
        default,
        deserialize_with = "steps_or_off",
        skip_serializing_if = "is_zero"
    )]
    pub diagnostics_every: usize,
    /// Write a greedy sample of `sample_tokens` tokens after `sample_prompt` at every this many
    /// validations, and at the last (src/train/samples.rs); 0: none. Like the diagnostics, the
    /// three are left out of the saved config when off and out of the resume hash.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sample_every: usize,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sample_prompt: String,
    #[serde(default = "default_sample_tokens", skip_serializing_if = "is_zero")]
    pub sample_tokens: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Which reference's token order the train loader follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoaderKind {
    #[default]
    Record4,
    Track3,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

fn default_late_frac() -> f64 {
    0.9
}

fn is_default_late_frac(x: &f64) -> bool {
    *x == 0.9
}

/// `train.diagnostics_every`: a whole number ≥ 0. A negative, fractional or non-numeric value is
/// an error that names the field and says what is wanted.
fn steps_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    use serde::de::{Error, Unexpected};
    struct Steps;
    impl serde::de::Visitor<'_> for Steps {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("train.diagnostics_every as a whole number of steps >= 0 (0 = off)")
        }
        fn visit_u64<E: Error>(self, v: u64) -> std::result::Result<usize, E> {
            usize::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }
        fn visit_i64<E: Error>(self, v: i64) -> std::result::Result<usize, E> {
            usize::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
        }
        fn visit_f64<E: Error>(self, v: f64) -> std::result::Result<usize, E> {
            Err(E::invalid_type(Unexpected::Float(v), &self))
        }
    }
    d.deserialize_any(Steps)
}

fn default_ranks() -> usize {
    1
}
fn default_keep() -> usize {
    2
}
fn default_log_every() -> usize {
    10
}
fn default_sample_tokens() -> usize {
    32
}

impl TrainConfig {
    /// Sequences in one rank's window per step, checked to divide evenly.
    pub fn rank_batch(&self, seq_len: usize) -> Result<usize> {
        let per_rank = self.ranks.max(1) * seq_len;
        if self.ranks == 0 || self.batch_tokens == 0 || !self.batch_tokens.is_multiple_of(per_rank)
        {
            bail!(
                "train.batch_tokens = {} is not a positive multiple of train.ranks × model.seq_len = {} × {}",
                self.batch_tokens,
                self.ranks,
                seq_len
            );
        }
        let b = self.batch_tokens / per_rank;
        let call = if self.device_batch == 0 {
            b
        } else {
            self.device_batch
        };
        if !b.is_multiple_of(call) {
            bail!(
                "train.device_batch = {call} must divide the {b} sequences of one rank's window (batch_tokens / (ranks × seq_len))"
            );
        }
        if self.micro_batch == 0 || !call.is_multiple_of(self.micro_batch) {
            bail!(
                "train.micro_batch = {} must divide the {call} sequences of one loader call (train.device_batch, or the rank's window when 0)",
                self.micro_batch
            );
        }
        Ok(b)
    }

    /// Whether step `step` (0..=steps) validates: the last one, and every `val_every` steps, or
    /// every `val_every_late` once `step/steps` ≥ `val_late_frac` (Track 3,
    /// train_gpt_simple.py:328-329).
    pub fn is_val_step(&self, step: usize) -> bool {
        let late =
            self.val_every_late > 0 && step as f64 / self.steps.max(1) as f64 >= self.val_late_frac;
        let every = if late {
            self.val_every_late
        } else {
            self.val_every
        };
        step == self.steps || step.is_multiple_of(every.max(1))
    }

    /// Sequences of one rank's loader call (`device_batch`, or the rank's window when 0).
    pub fn call_batch(&self, seq_len: usize) -> Result<usize> {
        let b = self.rank_batch(seq_len)?;
        Ok(if self.device_batch == 0 {
            b
        } else {
            self.device_batch
        })
    }

    /// Micro-batches per step (gradient accumulation), checked to divide evenly.
    pub fn accum_steps(&self, seq_len: usize) -> Result<usize> {
        let b = self.rank_batch(seq_len)?;
        Ok(self.ranks * (b / self.micro_batch))
    }

    pub fn val_batch(&self) -> usize {
        if self.val_micro_batch == 0 {
            self.micro_batch
        } else {
            self.val_micro_batch
        }
    }

    /// Validation micro-batches, checked to divide evenly.
    pub fn val_steps(&self, seq_len: usize) -> Result<usize> {
        let t = self.val_batch() * seq_len;
        if t == 0 || !self.val_tokens.is_multiple_of(t) || self.val_tokens == 0 {
            bail!(
                "train.val_tokens = {} is not a positive multiple of the validation micro-batch ({} × {} tokens)",
                self.val_tokens,
                self.val_batch(),
                seq_len
            );
        }
        Ok(self.val_tokens / t)
    }
}

impl Config {
    /// Check cross-field constraints that serde cannot.
    pub fn validate(&self) -> Result<()> {
        let m = &self.model;
        let sizes = [
            ("model.vocab_size", m.vocab_size),
            ("model.n_layer", m.n_layer),
            ("model.n_head", m.n_head),
            ("model.n_embd", m.n_embd),
            ("model.seq_len", m.seq_len),
        ];
        if let Some((key, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            bail!("{key} = 0 must be > 0");
        }
        if !m.n_embd.is_multiple_of(m.n_head) {
            bail!(
                "model.n_embd = {} must be a multiple of model.n_head = {}",
                m.n_embd,
                m.n_head
            );
        }
        if !(m.n_embd / m.n_head).is_multiple_of(2) {
            bail!(
                "head dim n_embd/n_head = {} must be even (rotary half-split)",
                m.n_embd / m.n_head
            );
        }
        if m.vocab_size > 65536 {
            bail!(
                "model.vocab_size = {} does not fit the u16 shard format",
                m.vocab_size
            );
        }
        self.train.accum_steps(m.seq_len)?;
        self.train.val_steps(m.seq_len)?;
        if self.train.steps == 0 {
            bail!("train.steps must be > 0");
        }
        let t = &self.train;
        if t.cooldown_frac != 0.0
            && (t.warmdown_steps != 0 || !(t.cooldown_frac > 0.0 && t.cooldown_frac <= 1.0))
        {
            bail!(
                "train.cooldown_frac = {} must be in (0, 1] and train.warmdown_steps 0 (got {}): they are two ways to say the same",
                t.cooldown_frac,
                t.warmdown_steps
            );
        }
        if !(t.val_late_frac.is_finite() && (0.0..=1.0).contains(&t.val_late_frac)) {
            bail!(
                "train.val_late_frac = {} must be in [0, 1]",
                t.val_late_frac
            );
        }
        if t.loader == LoaderKind::Track3 && (t.repeat_first_batch || t.device_batch != 0) {
            bail!("train.loader = \"track3\" reads one window per step with no repeated first batch: train.repeat_first_batch and train.device_batch must be left out");
        }
        if self.train.warmup_steps + self.train.warmdown_steps > self.train.steps {
            bail!(
                "train.warmup_steps + train.warmdown_steps = {} exceeds train.steps = {}",
                self.train.warmup_steps + self.train.warmdown_steps,
                self.train.steps
            );
        }
        if self.train.val_every == 0 {
            bail!("train.val_every must be > 0");
        }
        if !self.train.target_loss.is_finite() {
            bail!(
                "train.target_loss = {} must be a finite number",
                self.train.target_loss
            );
        }
        self.check_rates()?;
        self.check_optim_ranges()
    }

    /// The fields in which `other` differs from `self`, as dotted keys (bookkeeping fields that a
    /// resume may change are left out, as in [`Config::resume_hash`]).
    pub fn differing_fields(&self, other: &Config) -> Vec<String> {
        let (a, b) = (self.hashed(), other.hashed());
        let (Ok(a), Ok(b)) = (toml::Value::try_from(&a), toml::Value::try_from(&b)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        diff_values("", &a, &b, &mut out);
        out
    }

    /// The config with the fields a resume may change zeroed (bookkeeping and diagnostics).
    fn hashed(&self) -> Config {
        let mut c = self.clone();
        c.train.checkpoint_every = 0;
        c.train.keep_checkpoints = 0;
        c.train.log_every = 0;
        // Diagnostics and samples read the run; they change nothing in it.
        c.train.diagnostics_every = 0;
        (c.train.sample_every, c.train.sample_tokens) = (0, 0);
        c.train.sample_prompt.clear();
        c
    }

    /// Hash of everything that must not change across a resume (all but run bookkeeping).
    pub fn resume_hash(&self) -> String {
        let text = toml::to_string(&self.hashed()).unwrap_or_default();
        let digest = Sha256::digest(text.as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("serialising the resolved config")
    }
}

/// Collect the dotted keys under `prefix` whose values differ between `a` and `b`.
fn diff_values(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    match (a.as_table(), b.as_table()) {
        (Some(ta), Some(tb)) => {
            let mut keys: Vec<&String> = ta.keys().chain(tb.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (ta.get(k), tb.get(k)) {
                    (Some(x), Some(y)) => diff_values(&key, x, y, out),
                    _ => out.push(key),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

/// Read a preset (path, `configs/NAME.toml` or built-in name) and apply `key=value` overrides.
///
/// A preset may hold a `[method.<optim>]` table per optimizer: when the run's `optim.name` is
/// that optimizer, its tables are merged over the preset's (Track 3's entries differ per
/// method in steps, init and auxiliary rates: docs/track3.md). `--set` overrides win over both.
pub fn load(preset: &str, sets: &[String]) -> Result<Config> {
    let (origin, text) = preset_text(preset)?;
    let mut value: toml::Value = toml::from_str(&text)
        .map_err(|e| anyhow!("{origin}: invalid TOML: {}", crate::toml_error(&text, &e)))?;
    let methods = match value.as_table_mut() {
        Some(t) => t.remove("method"),
        None => None,
    };
    for s in sets {
        apply_set(&mut value, s)?;
    }
    if let Some(methods) = methods {
        let overlay = method_overlay(&methods, &value).with_context(|| origin.clone())?;
        if let Some(overlay) = overlay {
            merge(&mut value, overlay);
            for s in sets {
                apply_set(&mut value, s)?;
            }
        }
    }
    let cfg: Config = value
        .try_into()
        .map_err(|e: toml::de::Error| anyhow!("{origin}: {}", one_line(&e.to_string())))?;
    cfg.validate().with_context(|| origin.to_string())?;
    Ok(cfg)
}

/// The `[method.<name>]` table of the run's optimizer (`optim.name`, default muon), checking
/// that every table names a known optimizer.
fn method_overlay(methods: &toml::Value, config: &toml::Value) -> Result<Option<toml::Value>> {
    let table = methods
        .as_table()
        .ok_or_else(|| anyhow!("`method` must be a table of per-optimizer tables"))?;
    for key in table.keys() {
        key.parse::<crate::optim::Method>()
            .with_context(|| format!("[method.{key}]"))?;
    }
    let name = config
        .get("optim")
        .and_then(|o| o.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("muon");
    Ok(table.get(name).cloned())
}

/// Merge `over` into `base`: tables key by key, any other value replaced.
fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Parse a config from TOML text (used for a run's saved `config.toml`).
pub fn from_toml_file(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let cfg: Config = toml::from_str(&text)
        .map_err(|e| anyhow!("{}: {}", path.display(), crate::toml_error(&text, &e)))?;
    Ok(cfg)
}

fn preset_text(preset: &str) -> Result<(String, String)> {
    let p = Path::new(preset);
    if p.is_file() {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
        return Ok((p.display().to_string(), text));
    }
    let local = Path::new("configs").join(format!("{preset}.toml"));
    if local.is_file() {
        let text = std::fs::read_to_string(&local)
            .with_context(|| format!("{}: cannot read", local.display()))?;
        return Ok((local.display().to_string(), text));
    }
    if let Some((name, text)) = BUILTIN_PRESETS.iter().find(|(n, _)| *n == preset) {
        return Ok((format!("built-in preset {name}"), text.to_string()));
    }
    let names: Vec<&str> = BUILTIN_PRESETS.iter().map(|(n, _)| *n).collect();
    bail!(
        "--config {preset}: no such file, and not a preset name (presets: {})",
        names.join(", ")
    )
}

/// Digits with an optional sign (and TOML's `_` separators).
fn is_integer_literal(raw: &str) -> bool {
    let digits = raw.strip_prefix(['+', '-']).unwrap_or(raw);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
}

/// Apply one `a.b.c=value` override. The value is parsed as a TOML value (number, bool, string,
/// array); anything that does not parse is taken as a bare string.
pub fn apply_set(root: &mut toml::Value, set: &str) -> Result<()> {
    let (key, raw) = set
        .split_once('=')
        .ok_or_else(|| anyhow!("--set {set}: expected key=value, e.g. --set train.steps=200"))?;
    let key = key.trim();
    let raw = raw.trim();
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or(toml::Value::String(raw.to_string())),
        // A number TOML cannot hold would otherwise become a string, and the error would say
        // "invalid type: string" about a number.
        Err(_) if is_integer_literal(raw) => bail!(
            "--set {set}: {raw} is out of range (a TOML integer is at most {})",
            i64::MAX
        ),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("--set {set}: empty key segment");
    }
    let mut cur = root;
    for part in &parts[..parts.len() - 1] {
        let table = cur.as_table_mut().ok_or_else(|| {
            anyhow!("--set {set}: `{part}` is inside a value that is not a table")
        })?;
        cur = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = cur
        .as_table_mut()
        .ok_or_else(|| anyhow!("--set {set}: parent of the key is not a table"))?;
    // Keep integer fields integers and float fields floats when the user writes `1` for a float.
    let last = parts[parts.len() - 1];
    let value = match (table.get(last), value) {
        (Some(toml::Value::Float(_)), toml::Value::Integer(i)) => toml::Value::Float(i as f64),
        (_, v) => v,
    };
    table.insert(last.to_string(), value);
    Ok(())
}
