//! The training loop: gradient accumulation over virtual ranks, the record-4 clock, validation,
//! time-to-target, checkpoints and exact resume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};

use super::checkpoint::{self, TargetHit, TrainState, FORMAT_VERSION};
use super::config::Config;
use super::log::{self, Console, JsonlLog, Record};
use super::run_dir::{self, Meta, Summary};
use super::schedule::lr_mult;
use crate::data::Loader;
use crate::device::Exec;
use crate::model::{Gpt, LayerInputSink};
use crate::optim::{self, Grads, LayerInputRouter};

/// Steps excluded from the clock, as in record 4 (compilation and warm-up).
pub const UNTIMED_STEPS: usize = 10;

/// Where a run starts from.
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// Start fresh; the run directory must not hold an earlier run.
    No,
    /// Newest complete checkpoint of the run directory (fresh start when there is none).
    Latest,
    /// A given checkpoint directory.
    Path(PathBuf),
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub run_dir: PathBuf,
    pub exec: Exec,
    pub resume: Resume,
    pub init_from: Option<PathBuf>,
    /// Stop (with a checkpoint) once this many steps are done; the run stays resumable.
    pub stop_after: Option<usize>,
    pub progress_bar: bool,
}

struct Clock {
    train_time_ms: f64,
    timed_steps: usize,
}

impl Clock {
    fn step_avg(&self) -> f64 {
        if self.timed_steps == 0 {
            0.0
        } else {
            self.train_time_ms / self.timed_steps as f64
        }
    }
}

/// Train `cfg` into `opts.run_dir`; returns the summary also written to `summary.json`.
pub fn train(cfg: &Config, opts: &RunOptions) -> Result<Summary> {
    cfg.validate()?;
    let run_dir = &opts.run_dir;
    let device = &opts.exec.device;
    let t = cfg.model.seq_len;
    let accum = cfg.train.accum_steps(t)?;
    let rank_b = cfg.train.rank_batch(t)?;
    let b = cfg.train.micro_batch;

    // Where do we start?
    let resume_from = match &opts.resume {
        Resume::No => {
            if run_dir.join("log.jsonl").exists() {
                bail!(
                    "{}: holds an earlier run; pass --resume to continue it or --name to start another",
                    run_dir.display()
                );
            }
            None
        }
        Resume::Latest => checkpoint::latest(run_dir)?,
        Resume::Path(p) => Some(p.clone()),
    };
    let ns_dtype = opts.exec.ns_dtype;
    let (model, mut opt, state) = match &resume_from {
        Some(dir) => {
            let loaded = checkpoint::load(dir, device)?;
            if loaded.state.config_hash != cfg.resume_hash() {
                bail!(
                    "{}: written with a different config (hash {} vs {}); resume with the run's own config.toml",
                    dir.display(),
                    loaded.state.config_hash,
                    cfg.resume_hash()
                );
            }
            let model = Gpt::from_safetensors(&cfg.model, &dir.join("model.safetensors"), device)?;
            let mut opt = optim::build(&cfg.optim, model.vars(), ns_dtype)?;
            opt.load_state(&loaded.optim).with_context(|| {
                format!(
                    "{}: optimizer state",
                    dir.join("optim.safetensors").display()
                )
            })?;
            run_dir::truncate_log(&run_dir.join("log.jsonl"), loaded.state.step)?;
            (model, opt, Some(loaded.state))
        }
        None => {
            if run_dir.join("log.jsonl").exists() {
                // --resume on a run that never wrote a checkpoint: start over.
                std::fs::remove_file(run_dir.join("log.jsonl")).ok();
            }
            let model = match &opts.init_from {
                Some(p) => Gpt::from_safetensors(&cfg.model, p, device)?,
                None => Gpt::new(&cfg.model, device, cfg.seed)?,
            };
            let opt = optim::build(&cfg.optim, model.vars(), ns_dtype)?;
            (model, opt, None)
        }
    };

    // Created only now, so a bad --init-from or checkpoint leaves no empty run directory behind.
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("{}: cannot create run dir", run_dir.display()))?;
    let config_text = cfg.to_toml()?;
    crate::fsutil::write_atomic(&run_dir.join("config.toml"), config_text.as_bytes())?;
    let precision = if opts.exec.compute == DType::BF16 {
        "bf16"
    } else {
        "fp32"
    };
    let meta = Meta::new(crate::device::describe(device), precision.to_string());
    crate::fsutil::write_json(&run_dir.join("meta.json"), &meta)?;

    let mut train_loader = Loader::new(
        &cfg.data.train,
        rank_b,
        t,
        cfg.train.ranks,
        cfg.model.vocab_size,
    )
    .with_context(|| format!("train data {}", cfg.data.train))?;
    let val_b = cfg.train.val_batch();
    let mut val_loader = Loader::new(&cfg.data.val, val_b, t, 1, cfg.model.vocab_size)
        .with_context(|| format!("val data {}", cfg.data.val))?;
    let val_steps = cfg.train.val_steps(t)?;

    let steps = cfg.train.steps;
    let (start, mut clock, mut target, mut last_val) = match &state {
        Some(s) => {
            train_loader.seek(s.train_loader.clone())?;
            (
                s.step,
                Clock {
                    train_time_ms: s.train_time_ms,
                    timed_steps: s.timed_steps,
                },
                s.target.clone(),
                s.last_val_loss,
            )
        }
        None => (
            0,
            Clock {
                train_time_ms: 0.0,
                timed_steps: 0,
            },
            None,
            None,
        ),
    };
    if start > steps {
        bail!("checkpoint is at step {start}, past train.steps = {steps}");
    }

    let mut jsonl = JsonlLog::open(&run_dir.join("log.jsonl"))?;
    let console = Console::new(steps, start, opts.progress_bar);
    console.line(&format!(
        "run {} | {} | {} | {} params | {} tokens/step = {} ranks × {} seqs × {} (micro-batch {}, accum {}) | {}",
        run_dir.display(),
        cfg.optim.name,
        meta.device,
        cfg.model.num_params(),
        cfg.train.batch_tokens,
        cfg.train.ranks,
        rank_b,
        t,
        b,
        accum,
        match &resume_from {
            Some(d) => format!("resumed from {}", d.display()),
            None => "fresh start".to_string(),
        }
    ));

    let mut summary = Summary {
        name: run_dir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default(),
        optim: cfg.optim.name.to_string(),
        seed: cfg.seed,
        target_loss: cfg.train.target_loss,
        device: meta.device.clone(),
        ..Default::default()
    };
    let tokens_at = |s: usize| (s as u64) * (cfg.train.batch_tokens as u64);

    let mut step = start;
    loop {
        let last = step == steps;
        let resumed_here = state.is_some() && step == start;
        // Validation (not on the clock), at step 0, every val_every steps and at the end.
        if !resumed_here && (last || step % cfg.train.val_every == 0) {
            let vl = validate(
                &model,
                &mut val_loader,
                val_steps,
                device,
                opts.exec.val_compute,
            )?;
            last_val = Some(vl);
            jsonl.write(&Record::Val {
                step,
                val_loss: vl,
                tokens: tokens_at(step),
                train_time_ms: clock.train_time_ms,
            })?;
            console.line(&log::val_line(
                step,
                steps,
                vl,
                clock.train_time_ms,
                clock.step_avg(),
            ));
            if target.is_none() && vl <= cfg.train.target_loss {
                let hit = TargetHit {
                    step,
                    tokens: tokens_at(step),
                    train_time_ms: clock.train_time_ms,
                    val_loss: vl,
                };
                jsonl.write(&Record::Target {
                    step,
                    tokens: hit.tokens,
                    train_time_ms: hit.train_time_ms,
                    val_loss: vl,
                })?;
                console.line(&format!(
                    "target {:.4} reached at step {} ({} tokens, train_time {:.0}ms)",
                    cfg.train.target_loss, step, hit.tokens, hit.train_time_ms
                ));
                target = Some(hit);
            }
            write_summary(
                run_dir,
                &mut summary,
                step,
                last_val,
                &clock,
                &target,
                cfg,
                false,
            )?;
        }

        let stop_here = opts.stop_after.is_some_and(|s| step >= s);
        let ckpt_due =
            cfg.train.checkpoint_every > 0 && step % cfg.train.checkpoint_every == 0 && step > 0;
        if !resumed_here && (last || stop_here || ckpt_due) {
            let st = TrainState {
                format_version: FORMAT_VERSION,
                step,
                train_loader: train_loader.position(),
                seed: cfg.seed,
                config_hash: cfg.resume_hash(),
                tokens_seen: tokens_at(step),
                train_time_ms: clock.train_time_ms,
                timed_steps: clock.timed_steps,
                target: target.clone(),
                last_val_loss: last_val,
            };
            let model_tensors: Vec<(String, Tensor)> = model
                .vars()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
                .collect();
            let dir = checkpoint::save(
                run_dir,
                &model_tensors,
                &opt.state()?,
                &st,
                cfg.train.keep_checkpoints,
            )?;
            if stop_here && !last {
                console.line(&format!(
                    "stopped after step {step}; resume with --resume ({})",
                    dir.display()
                ));
            }
        }
        if last || stop_here {
            break;
        }

        // One optimizer step.
        let t0 = Instant::now();
        let windows = train_loader.next_step()?;
        let collect = opt.wants_layer_inputs(step);
        let mut grads: Grads = BTreeMap::new();
        // Summed on the device and read once per step: a read per micro-batch would be a host sync
        // per micro-batch on a GPU.
        let mut loss_sum: Option<Tensor> = None;
        // Each rank's window holds rank_b sequences; micro-batch j of it is rows j·b .. (j+1)·b of the
        // window's inputs and targets, so the split changes no token's position in the step.
        let micro_tokens = b * t;
        for w in &windows {
            for j in 0..rank_b / b {
                let span = j * micro_tokens..(j + 1) * micro_tokens;
                let x = Tensor::from_slice(&w.inputs[span.clone()], (b, t), device)?;
                let y = Tensor::from_slice(&w.targets[span], (b, t), device)?;
                let loss = if collect {
                    let mut router = LayerInputRouter {
                        set: &mut opt,
                        step,
                    };
                    let sink = Some(&mut router as &mut dyn LayerInputSink);
                    accumulate_micro_batch(
                        &model,
                        &x,
                        &y,
                        opts.exec.compute,
                        sink,
                        accum,
                        &mut grads,
                    )?
                } else {
                    accumulate_micro_batch(
                        &model,
                        &x,
                        &y,
                        opts.exec.compute,
                        None,
                        accum,
                        &mut grads,
                    )?
                };
                loss_sum = Some(match loss_sum {
                    Some(acc) => (acc + loss)?,
                    None => loss,
                });
            }
        }
        let mult = lr_mult(
            step,
            steps,
            cfg.train.warmup_steps,
            cfg.train.warmdown_steps,
        );
        opt.step(&grads, mult)?;
        drop(grads);
        sync(device)?;
        let step_ms = t0.elapsed().as_secs_f64() * 1e3;
        if step >= UNTIMED_STEPS {
            clock.train_time_ms += step_ms;
            clock.timed_steps += 1;
        }
        step += 1;
        let loss_sum = loss_sum.ok_or_else(|| anyhow!("a step without micro-batches"))?;
        let last_train_loss = loss_sum.to_scalar::<f64>()? / accum as f64;
        if !last_train_loss.is_finite() {
            bail!("train loss is {last_train_loss} at step {step}: diverged (lower the lr?)");
        }
        let lrs: BTreeMap<String, f64> = opt.lrs(mult).into_iter().collect();
        jsonl.write(&Record::Train {
            step,
            loss: last_train_loss,
            lrs,
            tokens: tokens_at(step),
            step_ms,
            train_time_ms: clock.train_time_ms,
        })?;
        if step <= 5 || step % cfg.train.log_every.max(1) == 0 {
            console.line(&log::train_line(
                step,
                steps,
                last_train_loss,
                clock.train_time_ms,
                clock.step_avg(),
            ));
        }
        console.progress(
            step,
            last_train_loss,
            cfg.train.batch_tokens as f64 / (step_ms / 1e3),
        );
    }
    console.finish();

    let finished = step == steps;
    write_summary(
        run_dir,
        &mut summary,
        step,
        last_val,
        &clock,
        &target,
        cfg,
        finished,
    )?;
    if finished {
        let msg = match &target {
            Some(h) => format!(
                "done: val_loss {:.4}; target {} reached at step {} ({} tokens, {:.1}s train_time)",
                last_val.unwrap_or(f64::NAN),
                cfg.train.target_loss,
                h.step,
                h.tokens,
                h.train_time_ms / 1e3
            ),
            None => format!(
                "done: val_loss {:.4}; target {} NOT reached in {} steps",
                last_val.unwrap_or(f64::NAN),
                cfg.train.target_loss,
                steps
            ),
        };
        println!("{msg}");
    }
    Ok(summary)
}

/// Refresh `summary` from the run's state and write `summary.json` (atomically).
#[allow(clippy::too_many_arguments)]
fn write_summary(
    run_dir: &Path,
    s: &mut Summary,
    step: usize,
    val: Option<f64>,
    clock: &Clock,
    target: &Option<TargetHit>,
    cfg: &Config,
    finished: bool,
) -> Result<()> {
    let batch_tokens = cfg.train.batch_tokens;
    s.final_step = step;
    s.final_val_loss = val;
    s.final_train_time_ms = clock.train_time_ms;
    s.step_avg_ms = clock.step_avg();
    s.tok_per_s = if clock.train_time_ms > 0.0 {
        batch_tokens as f64 * clock.timed_steps as f64 / (clock.train_time_ms / 1e3)
    } else {
        0.0
    };
    s.reached_target = target.is_some();
    s.target_step = target.as_ref().map(|h| h.step);
    s.target_tokens = target.as_ref().map(|h| h.tokens);
    s.target_train_time_ms = target.as_ref().map(|h| h.train_time_ms);
    s.finished = finished;
    crate::fsutil::write_json(&run_dir.join("summary.json"), s)
}

/// Forward and backward of one micro-batch: adds its gradients, scaled by 1/`accum`, into `grads`
/// and returns its (unscaled) loss as a detached f64 scalar tensor, still on the device. The GradStore, and with it the forward graph, is dropped before
/// returning (candle-notes #5): only the parameters' gradients are kept.
pub fn accumulate_micro_batch(
    model: &Gpt,
    x: &Tensor,
    y: &Tensor,
    compute: DType,
    sink: Option<&mut dyn LayerInputSink>,
    accum: usize,
    grads: &mut Grads,
) -> Result<Tensor> {
    let loss = model.loss(x, y, compute, sink)?;
    let value = loss.detach().to_dtype(DType::F64)?;
    let gs = (loss / accum as f64)?.backward()?;
    for (name, var) in model.vars() {
        let g = gs
            .get(var.as_tensor())
            .ok_or_else(|| anyhow!("no gradient for {name}"))?;
        match grads.remove(name) {
            Some(acc) => grads.insert(name.clone(), (acc + g)?),
            None => grads.insert(name.clone(), g.clone()),
        };
    }
    Ok(value)
}

/// Mean loss over the fixed validation budget from the start of the val shards, with no graph.
pub fn validate(
    model: &Gpt,
    loader: &mut Loader,
    steps: usize,
    device: &Device,
    dtype: DType,
) -> Result<f64> {
    loader.reset()?;
    let t = model.cfg.seq_len;
    let mut sum = 0f64;
    for _ in 0..steps {
        let w = loader
            .next_step()?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("val loader returned no window"))?;
        let b = w.inputs.len() / t;
        let x = Tensor::from_slice(&w.inputs, (b, t), device)?;
        let y = Tensor::from_slice(&w.targets, (b, t), device)?;
        sum += model.eval_loss(&x, &y, dtype)? as f64;
    }
    Ok(sum / steps as f64)
}

fn sync(device: &Device) -> Result<()> {
    device.synchronize()?;
    Ok(())
}

/// Default run directory name: `<preset>-<optim>-s<seed>`.
pub fn default_run_name(cfg: &Config) -> String {
    format!("{}-{}-s{}", cfg.name, cfg.optim.name, cfg.seed)
}

/// Is `dir` a finished run (summary says so)?
pub fn is_finished(dir: &Path) -> bool {
    matches!(run_dir::read_summary(dir), Ok(Some(s)) if s.finished)
}
