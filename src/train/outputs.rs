//! What a [`Trainer`] writes as it goes: the train records and console lines of each step,
//! checkpoints, `summary.json`, and how the run ended (finished, stopped, interrupted, diverged).
//! Rank 0 of a data-parallel run writes; the other processes only take part in the checks.

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::Tensor;

use super::checkpoint::{self, TrainState, FORMAT_VERSION};
use super::dist;
use super::log::{self, Record};
use super::outcome::Stopped;
use super::run_dir::{RunStatus, Summary};
use super::step;
use super::trainer::{StepOutcome, Trainer};

impl Trainer {
    /// End the run as diverged at the current step, with the non-finite `loss` seen there.
    pub(super) fn diverge(mut self, loss: f64) -> Result<Stopped> {
        let step = self.progress.step;
        self.progress.diverged_at = Some(step);
        self.log.write(&Record::Diverged { step, loss })?;
        let kept = self.last_checkpoint.clone();
        self.end_early(Stopped::Diverged { step, loss, kept })
    }

    /// Write the summary of a run that ends early and hand back why.
    pub(super) fn end_early(self, why: Stopped) -> Result<Stopped> {
        self.console.finish();
        let status = match why {
            Stopped::Interrupted { .. } | Stopped::Halted { .. } => RunStatus::Interrupted,
            Stopped::Diverged { .. } => RunStatus::Diverged,
        };
        self.write_summary(status)?;
        Ok(why)
    }

    /// Write a checkpoint of the current step (atomically; older ones pruned after).
    pub fn checkpoint(&mut self) -> Result<PathBuf> {
        if dist::size() > 1 {
            self.check_replicas_agree()?;
            if !dist::is_root() {
                return Ok(self.opts.run_dir.clone());
            }
        }
        // Every record up to this step is on disk before the checkpoint that a resume from it
        // trusts them to be.
        self.log.sync()?;
        let state = TrainState {
            format_version: FORMAT_VERSION,
            progress: self.progress.clone(),
            train_loader: self.train_loader.position(),
            seed: self.cfg.seed,
            config_hash: self.cfg.resume_hash(),
            files: Default::default(),
        };
        let model_tensors: Vec<(String, Tensor)> = self
            .model
            .vars()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let dir = checkpoint::save(
            &self.opts.run_dir,
            &model_tensors,
            &self.opt.state()?,
            &state,
            self.cfg.train.keep_checkpoints,
        )?;
        self.last_checkpoint = Some(dir.clone());
        Ok(dir)
    }

    /// Write the final summary and say how the run ended.
    pub fn finish(self) -> Result<Summary> {
        self.console.finish();
        let steps = self.cfg.train.steps;
        let finished = self.progress.step == steps;
        let status = if finished {
            RunStatus::Finished
        } else {
            RunStatus::Stopped
        };
        let summary = self.write_summary(status)?;
        if !dist::is_root() {
            return Ok(summary);
        }
        let val = self.progress.last_val_loss.unwrap_or(f64::NAN);
        let target = self.cfg.train.target_loss;
        let line = if !finished {
            let at = match &self.last_checkpoint {
                Some(dir) => format!(" ({})", dir.display()),
                None => String::new(),
            };
            format!(
                "stopped after step {}; resume with --resume{at}",
                self.progress.step
            )
        } else if let Some(h) = &self.progress.target {
            format!(
                "done: val_loss {val:.4}; target {target} reached at step {} ({} tokens, {:.1}s train_time)",
                h.step,
                h.tokens,
                h.train_time_ms / 1e3
            )
        } else {
            format!("done: val_loss {val:.4}; target {target} NOT reached in {steps} steps")
        };
        // Below the progress bar, which `finish` cleared: plain stdout.
        crate::out::line(&line);
        Ok(summary)
    }

    /// Every process of a data-parallel run must hold the same weights after a step: compare a
    /// hash of them across processes.
    fn check_replicas_agree(&self) -> Result<()> {
        let h = step::weights_hash(&self.model)?;
        let (lo, hi) = dist::min_max_u64(h);
        if lo != hi {
            bail!(
                "rank {}: the weights differ across processes at step {} (hash {h:016x})",
                dist::rank(),
                self.progress.step
            );
        }
        Ok(())
    }

    /// The train record of a finished step, and the console line and bar.
    pub(super) fn log_step(&mut self, out: &StepOutcome) -> Result<()> {
        let step = self.progress.step;
        let train_time_ms = self.progress.train_time_ms;
        self.log.write(&Record::Train {
            step,
            loss: out.loss,
            loss_rank0_last: out.loss_rank0_last,
            lrs: self.opt.lrs(out.lr_mult).into_iter().collect(),
            tokens: self.geo.tokens_at(step),
            step_ms: out.ms,
            train_time_ms,
            comm_ms: out.comm_ms,
            diag_ms: out.diag.as_ref().map(|d| d.ms),
        })?;
        if let Some(d) = &out.diag {
            self.log.write(&d.record)?;
        }
        let epoch = self.train_loader.epoch();
        if epoch != self.epoch_seen {
            self.log.write(&Record::Epoch { step, epoch })?;
            self.console.line(&format!(
                "step:{step} the training data ran out: epoch {epoch} starts again at its first shard"
            ));
            self.epoch_seen = epoch;
        }
        let diag = self.opt.diagnostics();
        if diag != self.last_diag {
            self.log.write(&Record::Optim {
                step,
                values: diag.clone(),
            })?;
            self.last_diag = diag;
        }
        let train = &self.cfg.train;
        if step <= 5 || step.is_multiple_of(train.log_every.max(1)) {
            let avg = self.progress.step_avg_ms();
            // The records' line carries the records' number (rank 0's last loader call).
            let shown = out.loss_rank0_last.unwrap_or(out.loss);
            let line = log::train_line(step, train.steps, shown, train_time_ms, avg);
            self.console.line(&line);
        }
        let tok_per_s = train.batch_tokens as f64 / (out.ms / 1e3);
        self.console.progress(step, out.loss, tok_per_s);
        Ok(())
    }

    pub(super) fn write_summary(&self, status: RunStatus) -> Result<Summary> {
        let dir = &self.opts.run_dir;
        let name = dir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let epochs = self.train_loader.epoch();
        let s = self
            .progress
            .summary(&self.cfg, &name, &self.device_name, status, epochs);
        if dist::is_root() {
            crate::fsutil::write_json(&dir.join("summary.json"), &s)?;
        }
        Ok(s)
    }
}
