//! Run logging: the modded-nanogpt console line, an indicatif progress bar and a JSONL log with one
//! record per step and per validation, a `diag` record per diagnostics step and a `sample` record
//! per sample (format in docs/run-format.md).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::config::Config;
use super::step::Geometry;

/// One line of `log.jsonl` (docs/run-format.md). The trainer writes these and `speedrun compare`
/// reads them back with the same type. A non-finite loss is written by serde_json as `null` and
/// read back as NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Train {
        step: usize,
        /// Mean loss over every micro-batch of every rank of the step.
        #[serde(deserialize_with = "f64_or_nan")]
        loss: f64,
        /// Rank 0's loss on its last loader call of the step: the number record 4 and NM-1 log
        /// as `train_loss` (train_gpt2.py:492). Absent in logs written before it existed.
        #[serde(
            default,
            deserialize_with = "opt_f64_or_nan",
            skip_serializing_if = "Option::is_none"
        )]
        loss_rank0_last: Option<f64>,
        #[serde(default)]
        lrs: BTreeMap<String, f64>,
        tokens: u64,
        #[serde(default)]
        step_ms: f64,
        #[serde(default)]
        train_time_ms: f64,
        /// Milliseconds of the step spent in all-reduces (only in a data-parallel run).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comm_ms: Option<f64>,
        /// Milliseconds spent on the step's diagnostics (only on diagnostics steps); not in
        /// `step_ms` nor on the clock.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diag_ms: Option<f64>,
    },
    Val {
        step: usize,
        #[serde(deserialize_with = "f64_or_nan")]
        val_loss: f64,
        tokens: u64,
        train_time_ms: f64,
    },
    Target {
        step: usize,
        tokens: u64,
        train_time_ms: f64,
        #[serde(deserialize_with = "f64_or_nan")]
        val_loss: f64,
    },
    /// The optimizer's diagnostics ([`crate::optim::Optimizer::diagnostics`]) after `step`
    /// steps, written when they differ from the last ones written.
    Optim {
        step: usize,
        values: BTreeMap<String, f64>,
    },
    /// The training data ran out during step `step`: epoch `epoch` (counted from 0) starts again
    /// at the first shard.
    Epoch { step: usize, epoch: usize },
    /// The train loss after `step` steps was not finite; the run ended there.
    Diverged {
        step: usize,
        #[serde(deserialize_with = "f64_or_nan")]
        loss: f64,
    },
}

impl Record {
    /// The step a record belongs to (a resume truncates the log by it).
    pub fn step(&self) -> usize {
        match self {
            Record::Train { step, .. }
            | Record::Val { step, .. }
            | Record::Target { step, .. }
            | Record::Optim { step, .. }
            | Record::Epoch { step, .. }
            | Record::Diverged { step, .. } => *step,
        }
    }
}

/// A `diag` line of `log.jsonl`: the spectra and optimizer values of the optimizer step that
/// completed step `step`, per 2-D hidden matrix (docs/diagnostics.md). Its own type rather than a
/// [`Record`] variant: it is large, written on a few steps only, and readers that match every
/// record kind skip it by its `kind` until they show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "diag")]
pub struct Diag {
    pub step: usize,
    /// By PyTorch weight name; a packed `c_attn` as `NAME.q`, `NAME.k`, `NAME.v`.
    pub layers: BTreeMap<String, LayerDiag>,
}

/// A `sample` line of `log.jsonl`: the greedy continuation of the run's fixed prompt by the
/// weights after `step` steps (`train.sample_every`, src/train/samples.rs). Its own type, as
/// [`Diag`] is, so that readers that match every [`Record`] kind skip it by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "sample")]
pub struct Sample {
    pub step: usize,
    pub prompt: String,
    /// The continuation alone, decoded.
    pub text: String,
    /// Its token ids.
    pub tokens: Vec<u32>,
}

/// One matrix of a [`Diag`] record (docs/diagnostics.md defines every field). The optional
/// fields are written only by the optimizers that have them; a non-finite value is written as
/// `null` (read back as NaN, or as absent for an optional field).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerDiag {
    #[serde(deserialize_with = "f64_or_nan")]
    pub grad_fro: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub grad_nuc: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub grad_spec: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub stable_rank: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub nuc_fro_ratio: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_rms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_spec: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_sigma_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_sigma_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k_cond: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ridge_share: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ridge_dominated: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tau: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_rank: Option<f64>,
}

/// `null` (how serde_json writes NaN and ±inf) or `"nan"` as NaN; any other non-number is an error.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum F {
        Num(f64),
        Text(String),
        Null(()),
    }
    match F::deserialize(d)? {
        F::Num(x) => Ok(x),
        F::Null(()) => Ok(f64::NAN),
        F::Text(s) if s.eq_ignore_ascii_case("nan") => Ok(f64::NAN),
        F::Text(s) => Err(serde::de::Error::custom(format!(
            "expected a number, got {s:?}"
        ))),
    }
}

/// [`f64_or_nan`] for an optional field (present as `null`: NaN).
fn opt_f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    f64_or_nan(d).map(Some)
}

/// Appends JSON lines and flushes each, so `speedrun compare` can read a live run.
pub struct JsonlLog {
    /// None on the processes of a data-parallel run that do not write (all but rank 0).
    file: Option<File>,
}

impl JsonlLog {
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}: cannot open log", path.display()))?;
        Ok(JsonlLog { file: Some(file) })
    }

    /// A log that writes nothing (a process other than rank 0).
    pub fn disabled() -> Self {
        JsonlLog { file: None }
    }

    /// Append one record ([`Record`] or [`Diag`]) as a line.
    pub fn write<R: Serialize>(&mut self, rec: &R) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut line = serde_json::to_string(rec)?;
        line.push('\n');
        file.write_all(line.as_bytes())
            .context("writing log.jsonl")?;
        file.flush().context("flushing log.jsonl")?;
        Ok(())
    }

    /// Make every record written so far durable (before a checkpoint that counts on them).
    pub fn sync(&self) -> Result<()> {
        match &self.file {
            Some(f) => f.sync_data().context("syncing log.jsonl"),
            None => Ok(()),
        }
    }
}

/// Console output: a progress bar with loss, tok/s and ETA, and plain lines printed above it.
pub struct Console {
    bar: ProgressBar,
    /// Prints nothing (a process other than rank 0).
    quiet: bool,
}

impl Console {
    pub fn new(total_steps: usize, start_step: usize, show_bar: bool) -> Self {
        let bar = if show_bar {
            let b = ProgressBar::with_draw_target(
                Some(total_steps as u64),
                ProgressDrawTarget::stderr_with_hz(4),
            );
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {pos}/{len} steps  {msg}  elapsed {elapsed_precise}  eta {eta_precise}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_position(start_step as u64);
            b.reset_eta();
            b
        } else {
            ProgressBar::hidden()
        };
        Console {
            bar,
            quiet: !super::dist::is_root(),
        }
    }

    /// A line above the bar (or plain stdout when there is no bar).
    pub fn line(&self, s: &str) {
        if self.quiet {
            return;
        }
        if self.bar.is_hidden() {
            // Never println!: a closed stdout must not kill the run (src/out.rs).
            crate::out::line(s);
        } else {
            self.bar.println(s);
        }
    }

    pub fn progress(&self, step_done: usize, loss: f64, tok_per_s: f64) {
        self.bar.set_position(step_done as u64);
        self.bar
            .set_message(format!("loss {loss:.4}  {:.0} tok/s", tok_per_s));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The modded-nanogpt log line: `step:N/M val_loss:X train_time:Tms step_avg:Ams`.
pub fn val_line(
    step: usize,
    steps: usize,
    val_loss: f64,
    train_time_ms: f64,
    step_avg_ms: f64,
) -> String {
    format!(
        "step:{step}/{steps} val_loss:{val_loss:.4} train_time:{:.0}ms step_avg:{step_avg_ms:.2}ms",
        train_time_ms
    )
}

/// The train line: `step:N/M train_loss:X train_time:Tms step_avg:Ams`.
pub fn train_line(
    step: usize,
    steps: usize,
    loss: f64,
    train_time_ms: f64,
    step_avg_ms: f64,
) -> String {
    format!(
        "step:{step}/{steps} train_loss:{loss:.4} train_time:{:.0}ms step_avg:{step_avg_ms:.2}ms",
        train_time_ms
    )
}

/// The first line of a run: where it writes, the method, device, size and batch geometry, and
/// where it starts from.
pub fn banner(
    cfg: &Config,
    g: &Geometry,
    run_dir: &Path,
    device: &str,
    from: Option<&Path>,
) -> String {
    format!(
        "run {} | {} | {} | {} params | {} tokens/step = {} ranks × {} seqs × {} (micro-batch {}, accum {}) | {}",
        run_dir.display(),
        cfg.optim.name,
        device,
        cfg.model.num_params(),
        cfg.train.batch_tokens,
        cfg.train.ranks,
        g.rank_batch,
        g.seq_len,
        g.micro_batch,
        g.accum,
        match from {
            Some(d) => format!("resumed from {}", d.display()),
            None => "fresh start".to_string(),
        }
    )
}
