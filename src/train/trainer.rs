//! The training loop: gradient accumulation over the record's ranks, the record-4 clock,
//! validation, optimizer diagnostics, time-to-target, checkpoints and exact resume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use candle_core::Tensor;

use super::config::Config;
use super::diagnostics::{self, Pass, SV_METHOD};
use super::dist;
use super::lock::RunLock;
use super::log::{self, Console, JsonlLog, Record};
use super::outcome::Stopped;
use super::progress::Progress;
use super::run_dir::{self, RunStatus, Summary};
use super::samples::RunSamples;
use super::schedule;
use super::signals;
use super::start::{self, Start};
pub use super::start::{preflight, val_loader, Resume, RunOptions};
use super::step::{accumulate_micro_batch, all_reduce_grads, validate, Geometry, GradSum};
use crate::data::Loader;
use crate::model::{Gpt, LayerInputSink};
use crate::optim::{LayerInputRouter, OptimizerSet};

/// One finished optimizer step.
pub struct StepOutcome {
    /// Mean train loss over the step's micro-batches (every rank's).
    pub loss: f64,
    /// Rank 0's loss on its last loader call of the step: the number record 4 and NM-1 print as
    /// `train_loss` (train_gpt2.py:492, train_gpt_newton_muon_1.py:829). None on the processes
    /// of a data-parallel run that do not train rank 0.
    pub loss_rank0_last: Option<f64>,
    /// Wall time of the step (forward, backward, optimizer, device sync), diagnostics excluded.
    pub ms: f64,
    /// The schedule's lr multiplier used.
    pub lr_mult: f64,
    /// Time in the step's all-reduces (data-parallel runs only).
    pub comm_ms: Option<f64>,
    /// The step's diagnostics, on `train.diagnostics_every` steps (rank 0 only).
    pub diag: Option<diagnostics::Done>,
}

/// A run: model, optimizer, data and run directory, advanced one step at a time.
pub struct Trainer {
    pub(super) cfg: Config,
    pub(super) opts: RunOptions,
    pub(super) geo: Geometry,
    pub(super) model: Gpt,
    pub(super) opt: OptimizerSet,
    pub(super) train_loader: Loader,
    pub(super) val_loader: Loader,
    /// Validation micro-batches of the budget (checked against the val shards).
    pub(super) val_steps: usize,
    /// The training data's epoch last logged.
    pub(super) epoch_seen: usize,
    pub(super) progress: Progress,
    /// The step a resume started at: its validation and checkpoint were done before.
    pub(super) resumed_at: Option<usize>,
    pub(super) last_checkpoint: Option<PathBuf>,
    pub(super) device_name: String,
    /// The optimizer diagnostics last written to the log.
    pub(super) last_diag: BTreeMap<String, f64>,
    pub(super) log: JsonlLog,
    pub(super) console: Console,
    /// This process is the run directory's only writer while the trainer lives (rank 0 of a
    /// data-parallel run; the others hold none and write nothing).
    pub(super) _lock: Option<RunLock>,
    /// The emulated ranks this process trains (all of them without MPI).
    pub(super) my_ranks: std::ops::Range<usize>,
    /// The samples of `train.sample_every` (None when off).
    pub(super) samples: Option<RunSamples>,
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
        let my_ranks = dist::my_ranks(cfg.train.ranks)?;
        let exec = &opts.exec;
        let Start {
            model,
            opt,
            state,
            from,
        } = start::resolve(cfg, &opts)?;
        // Checked before the run directory is touched (a resume cuts its log back).
        let (steps, start) = (
            cfg.train.steps,
            state.as_ref().map_or(0, |s| s.progress.step),
        );
        if start > steps {
            bail!("checkpoint is at step {start}, past train.steps = {steps}");
        }
        if let Some(s) = opts.stop_after.filter(|&s| s <= start && from.is_some()) {
            bail!("--stop-after {s}: the run is at step {start} already; pass a later step");
        }
        let (train_loader, val_loader, val_steps) = start::open_loaders(cfg, &geo)?;
        let samples = RunSamples::new(cfg)?;
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
            last_diag: super::resume::last_diagnostics(&opts.run_dir.join("log.jsonl")),
            log,
            console: Console::new(cfg.train.steps, 0, false),
            _lock: lock,
            my_ranks,
            samples,
            opts,
        };
        if let Some(st) = state {
            trainer.train_loader.seek(st.train_loader.clone())?;
            trainer.epoch_seen = trainer.train_loader.epoch();
            trainer.resumed_at = Some(st.progress.step);
            trainer.progress = st.progress;
        }
        trainer.last_checkpoint = from.clone();
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
    ///
    /// Every step that owes a validation gets exactly one, whatever stops the run: a stop request
    /// pending at such a step skips it so as to stop at once, and the checkpoint says so
    /// (`Progress::val_step`), so the resume validates there first.
    pub fn run(mut self) -> Result<Summary> {
        let steps = self.cfg.train.steps;
        loop {
            let step = self.progress.step;
            let last = step == steps;
            let stop = self.opts.stop_after.is_some_and(|s| step >= s);
            let mut signal = stop_request();
            let owed = self.cfg.train.is_val_step(step);
            let mut validated = false;
            if owed && signal.is_none() && self.progress.val_step != Some(step) {
                let vl = self.validate()?;
                if !vl.is_finite() {
                    // The weights after `step` are already bad: no checkpoint of them.
                    return Err(self.diverge(vl)?.into());
                }
                validated = true;
                self.sample_after_validation(step)?;
                // A request that came during the validation stops the run here.
                signal = stop_request();
            }
            // A resume starts where a checkpoint was written; it is written again only when
            // it gained this step's validation.
            let new_state = self.resumed_at != Some(step) || validated;
            if new_state && (last || stop || signal.is_some() || self.checkpoint_due(step)) {
                self.checkpoint()?;
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

    /// One optimizer step over the next batch of every rank.
    pub fn step(&mut self) -> Result<StepOutcome> {
        let t0 = Instant::now();
        dist::take_comm_ms();
        let step = self.progress.step;
        let collect = self.opt.wants_layer_inputs(step);
        let (sum, losses) = self.forward_backward(step, collect)?;
        let mut grads = sum.into_grads();
        // One read of both losses: a read is a host sync on a GPU.
        let host = losses.to_vec1::<f64>()?;
        let mut loss = [host[0]];
        let rank0_last = host.get(1).copied();
        if dist::size() > 1 {
            all_reduce_grads(&mut grads)?;
            dist::sum_f64(&mut loss);
            if collect {
                self.opt.reduce_layer_inputs(step)?;
            }
        }
        let train = &self.cfg.train;
        let mult = schedule::mult(step, train);
        let device = &self.opts.exec.device;
        // Rank 0 alone writes the log, so it alone spends the time: the others wait for it at the
        // next collective, as they do for its validation log lines.
        let every = train.diagnostics_every;
        let pass = if every > 0 && (step + 1).is_multiple_of(every) && dist::is_root() {
            Pass::before(step + 1, &grads, &mut self.opt, device, SV_METHOD)?
        } else {
            None
        };
        self.opt.step(&grads, mult)?;
        drop(grads);
        device.synchronize()?;
        let diag = pass.map(|p| p.after(&mut self.opt, device)).transpose()?;
        // The gradient all-reduce and the optimizers' all-gathers of this step.
        let comm_ms = (dist::size() > 1).then(dist::take_comm_ms);
        // Diagnostics are off the record-4 clock, as validation is.
        let diag_ms = diag.as_ref().map_or(0.0, |d| d.ms);
        let ms = t0.elapsed().as_secs_f64() * 1e3 - diag_ms;
        self.progress.finish_step(ms);
        Ok(StepOutcome {
            loss: loss[0] / self.geo.accum as f64,
            loss_rank0_last: rank0_last,
            ms,
            lr_mult: mult,
            comm_ms,
            diag,
        })
    }

    /// Forward and backward of every micro-batch of this process's ranks for `step`: the summed
    /// gradients, and on the device [sum of the micro-batch losses, mean loss of rank 0's last
    /// loader call] (the second only on the process that trains rank 0).
    fn forward_backward(&mut self, step: usize, collect: bool) -> Result<(GradSum, Tensor)> {
        // Every process walks the record's data order for all ranks and trains its own share.
        let all = self.train_loader.next_step()?;
        let (b, t) = (self.geo.micro_batch, self.geo.seq_len);
        let per_rank = self.geo.rank_batch / b;
        // Micro-batches of one loader call: rank 0's last call is what the records log.
        let per_call = self.geo.device_batch / b;
        let device = &self.opts.exec.device;
        let mut sum = GradSum::default();
        // Summed on the device and read once per step: a read per micro-batch would be a host
        // sync per micro-batch on a GPU.
        let (mut loss_sum, mut last_sum): (Option<Tensor>, Option<Tensor>) = (None, None);
        for r in self.my_ranks.clone() {
            let w = &all[r];
            // Micro-batch j of a rank's window is rows j·b .. (j+1)·b of its inputs and targets,
            // so the split changes no token's position in the step.
            for j in 0..per_rank {
                let span = j * b * t..(j + 1) * b * t;
                let x = Tensor::from_slice(&w.inputs[span.clone()], (b, t), device)?;
                let y = Tensor::from_slice(&w.targets[span], (b, t), device)?;
                let mut router = LayerInputRouter {
                    set: &mut self.opt,
                    step,
                };
                let sink = collect.then_some(&mut router as &mut dyn LayerInputSink);
                let compute = self.opts.exec.compute;
                let accum = self.geo.accum;
                let loss =
                    accumulate_micro_batch(&self.model, &x, &y, compute, sink, accum, &mut sum)?;
                if r == 0 && j + per_call >= per_rank {
                    last_sum = Some(add_to(last_sum, &loss)?);
                }
                loss_sum = Some(add_to(loss_sum, &loss)?);
            }
        }
        let loss_sum = loss_sum.ok_or_else(|| anyhow!("a step without micro-batches"))?;
        let mut parts = vec![loss_sum];
        if let Some(last) = last_sum {
            parts.push((last / per_call as f64)?);
        }
        Ok((sum, Tensor::stack(&parts, 0)?))
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
        self.write_summary(RunStatus::Running)?;
        Ok(vl)
    }

    /// The progress so far.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    fn checkpoint_due(&self, step: usize) -> bool {
        let every = self.cfg.train.checkpoint_every;
        every > 0 && step > 0 && step.is_multiple_of(every)
    }
}

/// `acc + x`, or `x` when there is nothing yet.
fn add_to(acc: Option<Tensor>, x: &Tensor) -> Result<Tensor> {
    Ok(match acc {
        Some(a) => (a + x)?,
        None => x.clone(),
    })
}

/// Why the run should stop now, if it should: a signal or a closed stdout
/// ([`signals::pending`]). Every process of a data-parallel run must stop at the same step, so
/// they agree on it first.
fn stop_request() -> Option<i32> {
    match dist::size() {
        1 => signals::pending(),
        _ => match dist::min_max_u64(signals::pending().unwrap_or(0) as u64).1 {
            0 => None,
            s => Some(s as i32),
        },
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
