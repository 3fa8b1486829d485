//! Timing of [`Trainer::step`] itself, on synthetic shards of random tokens in a temporary
//! directory, so that `speedrun bench model` measures exactly what training runs.

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};

use super::config::Config;
use super::trainer::{Resume, RunOptions, Trainer};
use crate::device::Exec;
use crate::model::GptConfig;

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

fn median(xs: &mut [f64]) -> f64 {
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
