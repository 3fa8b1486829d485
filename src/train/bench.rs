//! Timing of [`Trainer::step`] itself, on synthetic shards of random tokens in a temporary
//! directory, so that `speedrun bench model` measures exactly what training runs; and of one
//! diagnostics pass (`speedrun bench diag`).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};

use super::config::Config;
use super::diagnostics::Pass;
use super::trainer::{Resume, RunOptions, Trainer};
use crate::device::Exec;
use crate::model::GptConfig;
use crate::optim::spectral::SvMethod;
use crate::optim::{self, Method, OptimConfig};

/// Median step time of a preset.
#[derive(Debug, Clone, Copy)]
pub struct ModelBench {
    /// Median seconds of one optimizer step (forward, backward, optimizer, device sync).
    pub step_s: f64,
    /// Timed steps the median is taken over.
    pub timed: usize,
    pub tok_per_s: f64,
    /// Median allocations and bytes allocated per timed step (zero where the binary's counting
    /// allocator is not installed, `crate::alloc`).
    pub allocs_per_step: u64,
    pub alloc_bytes_per_step: u64,
    /// The process's peak resident set after the bench.
    pub peak_rss_bytes: Option<u64>,
}

/// Time `warmup + steps` steps of `cfg` (its data and schedule replaced by random tokens and a
/// constant lr) and return the median of the last `steps`.
pub fn bench_model(cfg: &Config, exec: &Exec, warmup: usize, steps: usize) -> Result<ModelBench> {
    if steps == 0 {
        bail!("--steps must be at least 1");
    }
    let tmp = tempfile::tempdir().context("creating a temporary bench directory")?;
    let mut cfg = cfg.clone();
    let t = cfg.model.seq_len;
    let vocab = cfg.model.vocab_size;
    let train = tmp.path().join("train.bin");
    let val = tmp.path().join("val.bin");
    // One step's tokens per shard pass (the loader wraps); validation never runs.
    random_shard(&train, cfg.train.batch_tokens + 1, vocab, 1234)?;
    cfg.train.val_tokens = cfg.train.val_batch() * t;
    random_shard(&val, cfg.train.val_tokens + 1, vocab, 4321)?;
    cfg.data.train = train.display().to_string();
    cfg.data.val = val.display().to_string();
    cfg.train.steps = warmup + steps;
    cfg.train.warmup_steps = 0;
    cfg.train.warmdown_steps = 0;
    let opts = RunOptions {
        run_dir: tmp.path().join("run"),
        exec: exec.clone(),
        resume: Resume::No,
        init_from: None,
        stop_after: None,
        progress_bar: false,
    };
    let mut trainer = Trainer::open(&cfg, opts)?;
    let mut times = Vec::with_capacity(steps);
    let (mut allocs, mut bytes) = (Vec::new(), Vec::new());
    for i in 0..warmup + steps {
        let (n0, b0) = crate::alloc::counts();
        let out = trainer.step()?;
        let (n1, b1) = crate::alloc::counts();
        if i >= warmup {
            times.push(out.ms / 1e3);
            allocs.push(n1 - n0);
            bytes.push(b1 - b0);
        }
    }
    let step_s = median(&mut times);
    Ok(ModelBench {
        step_s,
        timed: times.len(),
        tok_per_s: cfg.train.batch_tokens as f64 / step_s,
        allocs_per_step: median_u64(allocs),
        alloc_bytes_per_step: median_u64(bytes),
        peak_rss_bytes: crate::alloc::peak_rss_bytes(),
    })
}

/// The median (the upper one of an even count); `xs` is sorted in place.
pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|x, y| x.total_cmp(y));
    xs[xs.len() / 2]
}

fn median_u64(mut xs: Vec<u64>) -> u64 {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

fn random_shard(path: &std::path::Path, n: usize, vocab: usize, seed: u64) -> Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tokens: Vec<u16> = (0..n).map(|_| rng.random_range(0..vocab) as u16).collect();
    crate::data::write_shard(path, &tokens)
}

/// Training FLOPs per token: 6 × (matrix parameters, the tied head counted once as a matmul) plus
/// causal attention 6·L·T·d (scores and values, half of the full square for causal masking, ×3 for
/// forward and backward), as in the PaLM paper's appendix B accounting.
pub fn flops_per_token(c: &GptConfig) -> f64 {
    let n = c.num_params() as f64;
    6.0 * n + 6.0 * (c.n_layer * c.seq_len * c.n_embd) as f64
}

/// Median milliseconds of one diagnostics pass: before the optimizer step (gradient spectra) and
/// after it (update spectra and the optimizer's values); and the process CPU time of the pass,
/// all threads together (Linux; None elsewhere), which a machine shared with other jobs changes
/// less than the wall time.
#[derive(Debug, Clone, Copy)]
pub struct DiagBench {
    pub before_ms: f64,
    pub after_ms: f64,
    pub total_ms: f64,
    pub cpu_ms: Option<f64>,
}

/// User + system CPU seconds of this process so far, from /proc/self/stat (clock ticks of
/// 1/100 s, Linux's USER_HZ); None where there is no such file.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Time `iters` diagnostics passes of `method` (default hyperparameters) over random weights and
/// gradients of the given shapes, singular values by `sv`, after one untimed pass; the optimizer
/// steps between the two halves are not timed.
pub fn bench_diagnostics(
    method: Method,
    exec: &Exec,
    shapes: &[(usize, usize)],
    iters: usize,
    sv: SvMethod,
) -> Result<DiagBench> {
    if iters == 0 {
        bail!("--iters must be at least 1");
    }
    let device = &exec.device;
    let (params, grads) = optim::bench::bench_params(device, shapes)?;
    let cfg = OptimConfig {
        name: method,
        ..OptimConfig::default()
    };
    let mut set = optim::build(&cfg, &params, exec.ns_dtype)?;
    let (mut before, mut after, mut total, mut cpu) = (vec![], vec![], vec![], vec![]);
    for i in 0..=iters {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let pass = Pass::before(i + 1, &grads, &mut set, device, sv)?
            .context("the bench shapes have no hidden matrix")?;
        let (b, c1) = (t0.elapsed().as_secs_f64() * 1e3, cpu_seconds());
        set.step(&grads, 1.0)?;
        device.synchronize()?;
        let (t1, c2) = (Instant::now(), cpu_seconds());
        pass.after(&mut set, device)?;
        let (a, c3) = (t1.elapsed().as_secs_f64() * 1e3, cpu_seconds());
        if i > 0 {
            before.push(b);
            after.push(a);
            total.push(a + b);
            if let (Some(c0), Some(c1), Some(c2), Some(c3)) = (c0, c1, c2, c3) {
                cpu.push((c1 - c0 + c3 - c2) * 1e3);
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|x, y| x.total_cmp(y));
        v.get(v.len() / 2).copied()
    };
    Ok(DiagBench {
        before_ms: median(before).unwrap_or(f64::NAN),
        after_ms: median(after).unwrap_or(f64::NAN),
        total_ms: median(total).unwrap_or(f64::NAN),
        cpu_ms: median(cpu),
    })
}
