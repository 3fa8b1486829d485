//! The training loop: gradient accumulation over the record's ranks, the record-4 clock,
//! validation, time-to-target, checkpoints and exact resume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use candle_core::Tensor;

use super::checkpoint::{self, TrainState, FORMAT_VERSION};
use super::config::Config;
use super::log::{self, Console, JsonlLog, Record};
use super::outcome::Stopped;
use super::progress::Progress;
use super::run_dir::{self, RunLock, Summary};
use super::schedule::lr_mult;
use super::signals;
use super::start::{self, Start};
pub use super::start::{preflight, Resume, RunOptions};
use super::step::{accumulate_micro_batch, validate, Geometry};
use crate::data::Loader;
use crate::model::{Gpt, LayerInputSink};
use crate::optim::{Grads, LayerInputRouter, OptimizerSet};

/// One finished optimizer step.
#[derive(Debug, Clone, Copy)]
pub struct StepOutcome {
    /// Mean train loss over the step's micro-batches.
    pub loss: f64,
    /// Wall time of the step (forward, backward, optimizer, device sync).
    pub ms: f64,
    /// The schedule's lr multiplier used.
    pub lr_mult: f64,
}

/// A run: model, optimizer, data and run directory, advanced one step at a time.
pub struct Trainer {
    cfg: Config,
    opts: RunOptions,
    geo: Geometry,
    model: Gpt,
    opt: OptimizerSet,
    train_loader: Loader,
    val_loader: Loader,
    /// Validation micro-batches of the budget (checked against the val shards).
    val_steps: usize,
    /// The training data's epoch last logged.
    epoch_seen: usize,
    progress: Progress,
    /// The step a resume started at: its validation and checkpoint were done before.
    resumed_at: Option<usize>,
    last_checkpoint: Option<PathBuf>,
    device_name: String,
    /// The optimizer diagnostics last written to the log.
    last_diag: BTreeMap<String, f64>,
    log: JsonlLog,
    console: Console,
    /// This process is the run directory's only writer while the trainer lives.
    _lock: RunLock,
}

/// Train `cfg` into `opts.run_dir`; returns the summary also written to `summary.json`.
pub fn train(cfg: &Config, opts: &RunOptions) -> Result<Summary> {
    Trainer::open(cfg, opts.clone())?.run()
}

impl Trainer {
    /// Open a run: fresh, from `--init-from` weights, or resumed from a checkpoint. Config,
    /// weights, optimizer state and data are all checked before the run directory is written.
    pub fn open(cfg: &Config, opts: RunOptions) -> Result<Trainer> {
        cfg.validate()?;
        let geo = Geometry::of(cfg)?;
        let exec = &opts.exec;
        let Start {
            model,
            opt,
            state,
            from,
        } = start::resolve(cfg, &opts)?;
        let (train_loader, val_loader, val_steps) = start::open_loaders(cfg, &geo)?;
        let (log, lock) = start::prepare_run_dir(cfg, &opts, state.as_ref())?;
        let mut trainer = Trainer {
            cfg: cfg.clone(),
            geo,
            model,
            opt,
            train_loader,
            val_loader,
            val_steps,
            epoch_seen: 0,
            progress: Progress::default(),
            resumed_at: None,
            last_checkpoint: None,
            device_name: crate::device::describe(&exec.device),
            // Read after prepare_run_dir cut the log back to the checkpoint's step.
            last_diag: run_dir::last_diagnostics(&opts.run_dir.join("log.jsonl")),
            log,
            console: Console::new(cfg.train.steps, 0, false),
            _lock: lock,
            opts,
        };
        if let Some(st) = state {
            trainer.train_loader.seek(st.train_loader.clone())?;
            trainer.epoch_seen = trainer.train_loader.epoch();
            trainer.resumed_at = Some(st.progress.step);
            trainer.progress = st.progress;
        }
        let (steps, start) = (cfg.train.steps, trainer.progress.step);
        if start > steps {
            bail!("checkpoint is at step {start}, past train.steps = {steps}");
        }
        trainer.console = Console::new(steps, start, trainer.opts.progress_bar);
        let t = &trainer;
        let banner = log::banner(
            &t.cfg,
            &t.geo,
            &t.opts.run_dir,
            &t.device_name,
            from.as_deref(),
        );
        trainer.console.line(&banner);
        Ok(trainer)
    }

    /// Record 4's loop: validate every `val_every` steps and at the end, checkpoint when due,
    /// then take a step. A signal stops it after the step in progress, with a checkpoint; a
    /// non-finite loss ends it as diverged (both are [`Stopped`] errors).
    pub fn run(mut self) -> Result<Summary> {
        let steps = self.cfg.train.steps;
        loop {
            let step = self.progress.step;
            let last = step == steps;
            let stop = self.opts.stop_after.is_some_and(|s| step >= s);
            let signal = signals::pending();
            // A resume starts where a checkpoint was written, after that step's validation.
            if self.resumed_at != Some(step) {
                if signal.is_none() && (last || step % self.cfg.train.val_every == 0) {
                    let vl = self.validate()?;
                    if !vl.is_finite() {
                        // The weights after `step` are already bad: no checkpoint of them.
                        return Err(self.diverge(vl)?.into());
                    }
                }
                if last || stop || signal.is_some() || self.checkpoint_due(step) {
                    self.checkpoint()?;
                }
            }
            if let Some(signal) = signal {
                return Err(self
                    .end_early(Stopped::Interrupted { signal, step })?
                    .into());
            }
            if last || stop {
                break;
            }
            let out = self.step()?;
            if !out.loss.is_finite() {
                return Err(self.diverge(out.loss)?.into());
            }
            self.log_step(&out)?;
        }
        self.finish()
    }

    /// End the run as diverged at the current step, with the non-finite `loss` seen there.
    fn diverge(mut self, loss: f64) -> Result<Stopped> {
        let step = self.progress.step;
        self.progress.diverged_at = Some(step);
        self.log.write(&Record::Diverged { step, loss })?;
        self.end_early(Stopped::Diverged { step, loss })
    }

    /// Write the summary of a run that ends early and hand back why.
    fn end_early(self, why: Stopped) -> Result<Stopped> {
        self.console.finish();
        self.write_summary(false)?;
        Ok(why)
    }

    /// One optimizer step over the next batch of every rank.
    pub fn step(&mut self) -> Result<StepOutcome> {
        let t0 = Instant::now();
        let step = self.progress.step;
        let windows = self.train_loader.next_step()?;
        let collect = self.opt.wants_layer_inputs(step);
        let (b, t) = (self.geo.micro_batch, self.geo.seq_len);
        let device = &self.opts.exec.device;
        let mut grads: Grads = BTreeMap::new();
        // Summed on the device and read once per step: a read per micro-batch would be a host
        // sync per micro-batch on a GPU.
        let mut loss_sum: Option<Tensor> = None;
        for w in &windows {
            // Micro-batch j of a rank's window is rows j·b .. (j+1)·b of its inputs and targets,
            // so the split changes no token's position in the step.
            for j in 0..self.geo.rank_batch / b {
                let span = j * b * t..(j + 1) * b * t;
                let x = Tensor::from_slice(&w.inputs[span.clone()], (b, t), device)?;
                let y = Tensor::from_slice(&w.targets[span], (b, t), device)?;
                let mut router = LayerInputRouter {
                    set: &mut self.opt,
                    step,
                };
                let sink = collect.then_some(&mut router as &mut dyn LayerInputSink);
                let loss = accumulate_micro_batch(
                    &self.model,
                    &x,
                    &y,
                    self.opts.exec.compute,
                    sink,
                    self.geo.accum,
                    &mut grads,
                )?;
                loss_sum = Some(match loss_sum {
                    Some(acc) => (acc + loss)?,
                    None => loss,
                });
            }
        }
        let train = &self.cfg.train;
        let mult = lr_mult(step, train.steps, train.warmup_steps, train.warmdown_steps);
        self.opt.step(&grads, mult)?;
        drop(grads);
        device.synchronize()?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        self.progress.finish_step(ms);
        let loss_sum = loss_sum.ok_or_else(|| anyhow!("a step without micro-batches"))?;
        let loss = loss_sum.to_scalar::<f64>()? / self.geo.accum as f64;
        Ok(StepOutcome {
            loss,
            ms,
            lr_mult: mult,
        })
    }

    /// Mean loss over the validation budget (off the clock); logged, checked against the target,
    /// and the summary refreshed.
    pub fn validate(&mut self) -> Result<f64> {
        let (cfg, exec) = (&self.cfg, &self.opts.exec);
        let steps = self.val_steps;
        let vl = validate(
            &self.model,
            &mut self.val_loader,
            steps,
            &exec.device,
            exec.val_compute,
        )?;
        let p = &mut self.progress;
        let (step, tokens) = (p.step, self.geo.tokens_at(p.step));
        let hit = p.record_val(vl, cfg.train.target_loss, tokens);
        let train_time_ms = p.train_time_ms;
        self.log.write(&Record::Val {
            step,
            val_loss: vl,
            tokens,
            train_time_ms,
        })?;
        let avg = p.step_avg_ms();
        self.console.line(&log::val_line(
            step,
            cfg.train.steps,
            vl,
            train_time_ms,
            avg,
        ));
        if let Some(h) = hit {
            self.log.write(&Record::Target {
                step,
                tokens: h.tokens,
                train_time_ms: h.train_time_ms,
                val_loss: vl,
            })?;
            self.console.line(&format!(
                "target {:.4} reached at step {step} ({} tokens, train_time {:.0}ms)",
                cfg.train.target_loss, h.tokens, h.train_time_ms
            ));
        }
        self.write_summary(false)?;
        Ok(vl)
    }

    /// Write a checkpoint of the current step (atomically; older ones pruned after).
    pub fn checkpoint(&mut self) -> Result<PathBuf> {
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
        let summary = self.write_summary(finished)?;
        let val = self.progress.last_val_loss.unwrap_or(f64::NAN);
        let target = self.cfg.train.target_loss;
        if !finished {
            let dir = self.last_checkpoint.as_deref().unwrap_or(Path::new("?"));
            self.console.line(&format!(
                "stopped after step {}; resume with --resume ({})",
                self.progress.step,
                dir.display()
            ));
        } else if let Some(h) = &self.progress.target {
            println!(
                "done: val_loss {val:.4}; target {target} reached at step {} ({} tokens, {:.1}s train_time)",
                h.step,
                h.tokens,
                h.train_time_ms / 1e3
            );
        } else {
            println!("done: val_loss {val:.4}; target {target} NOT reached in {steps} steps");
        }
        Ok(summary)
    }

    /// The progress so far.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    fn checkpoint_due(&self, step: usize) -> bool {
        let every = self.cfg.train.checkpoint_every;
        every > 0 && step > 0 && step % every == 0
    }

    /// The train record of a finished step, and the console line and bar.
    fn log_step(&mut self, out: &StepOutcome) -> Result<()> {
        let step = self.progress.step;
        let train_time_ms = self.progress.train_time_ms;
        self.log.write(&Record::Train {
            step,
            loss: out.loss,
            lrs: self.opt.lrs(out.lr_mult).into_iter().collect(),
            tokens: self.geo.tokens_at(step),
            step_ms: out.ms,
            train_time_ms,
        })?;
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
        if step <= 5 || step % train.log_every.max(1) == 0 {
            let avg = self.progress.step_avg_ms();
            let line = log::train_line(step, train.steps, out.loss, train_time_ms, avg);
            self.console.line(&line);
        }
        let tok_per_s = train.batch_tokens as f64 / (out.ms / 1e3);
        self.console.progress(step, out.loss, tok_per_s);
        Ok(())
    }

    fn write_summary(&self, finished: bool) -> Result<Summary> {
        let dir = &self.opts.run_dir;
        let name = dir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut s = self
            .progress
            .summary(&self.cfg, &name, &self.device_name, finished);
        s.data_epochs = self.train_loader.epoch();
        crate::fsutil::write_json(&dir.join("summary.json"), &s)?;
        Ok(s)
    }
}

/// Default run directory name: `<preset>-<optim>-s<seed>`.
pub fn default_run_name(cfg: &Config) -> String {
    format!("{}-{}-s{}", cfg.name, cfg.optim.name, cfg.seed)
}

/// Has the run in `dir` ended for good (finished or diverged, as its summary says)?
pub fn has_ended(dir: &Path) -> bool {
    matches!(run_dir::read_summary(dir), Ok(Some(s)) if s.ended())
}
