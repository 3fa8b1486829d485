//! `speedrun bench model|optim`: timings, with the PyTorch peer run in the same invocation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Tensor};
use clap::{Args, Subcommand};
use rand::{Rng, SeedableRng};

use super::train::{ConfigArgs, DeviceArgs};
use crate::model::{Gpt, GptConfig};
use crate::optim::{self, Grads};
use crate::train::schedule::lr_mult;
use crate::train::trainer::accumulate_micro_batch;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// One full training step (forward, backward, optimizer) of a preset on synthetic tokens.
    Model(ModelBench),
    /// One optimizer step per method on the 124M weight shapes (or a preset's).
    Optim(OptimBench),
}

#[derive(Debug, Args)]
pub struct ModelBench {
    #[command(flatten)]
    pub cfg: ConfigArgs,
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Timed steps (after --warmup untimed ones).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Also run the PyTorch peer (scripts/bench_torch.py) with the same shapes and threads.
    #[arg(long)]
    pub peer: bool,
    /// Python of the peer (the project's venv: scripts/setup-venv.sh).
    #[arg(long, default_value = ".venv/bin/python")]
    pub python: PathBuf,
    /// Peak dense TFLOP/s of the device, for MFU (H100 SXM bf16: 989).
    #[arg(long)]
    pub peak_tflops: Option<f64>,
}

#[derive(Debug, Args)]
pub struct OptimBench {
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Methods to time; Muon is always included as the yardstick.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "adamw,muon,newton-muon,neon,neon-fstar"
    )]
    pub methods: Vec<optim::Method>,
    /// Width/layers of the matrix shapes (default: record 4, 12 × 768).
    #[arg(long, default_value_t = 768)]
    pub n_embd: usize,
    #[arg(long, default_value_t = 12)]
    pub n_layer: usize,
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
}

pub fn run(a: BenchArgs) -> Result<()> {
    match a.what {
        BenchWhat::Model(m) => bench_model(m),
        BenchWhat::Optim(o) => bench_optim(o),
    }
}

/// Training FLOPs per token: 6 × (matrix parameters, the tied head counted once as a matmul) plus
/// causal attention 6·L·T·d (scores and values, half of the full square for causal masking, ×3 for
/// forward and backward), as in the PaLM appendix B accounting.
pub fn flops_per_token(c: &GptConfig) -> f64 {
    let n = c.num_params() as f64;
    6.0 * n + 6.0 * (c.n_layer * c.seq_len * c.n_embd) as f64
}

fn bench_model(a: ModelBench) -> Result<()> {
    let cfg = a.cfg.resolve()?;
    let exec = a.dev.resolve()?;
    let (device, compute) = (exec.device.clone(), exec.compute);
    let t = cfg.model.seq_len;
    let b = cfg.train.micro_batch;
    let accum = cfg.train.accum_steps(t)?;
    let model = Gpt::new(&cfg.model, &device, cfg.seed)?;
    let mut opt = optim::build(&cfg.optim, model.vars(), exec.ns_dtype)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1234);
    let vocab = cfg.model.vocab_size as u32;
    let mut batch = || -> Result<(Tensor, Tensor)> {
        let x: Vec<u32> = (0..b * t).map(|_| rng.random_range(0..vocab)).collect();
        let y: Vec<u32> = (0..b * t).map(|_| rng.random_range(0..vocab)).collect();
        Ok((
            Tensor::from_vec(x, (b, t), &device)?,
            Tensor::from_vec(y, (b, t), &device)?,
        ))
    };
    let mut times = Vec::new();
    for i in 0..a.warmup + a.steps {
        let t0 = Instant::now();
        let mut grads: Grads = BTreeMap::new();
        for _ in 0..accum {
            let (x, y) = batch()?;
            accumulate_micro_batch(&model, &x, &y, compute, None, accum, &mut grads)?;
        }
        opt.step(&grads, lr_mult(i, 1000, 0, 0))?;
        device.synchronize()?;
        if i >= a.warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    times.sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
    let med = times[times.len() / 2];
    let tok = cfg.train.batch_tokens as f64 / med;
    println!(
        "speedrun  {} {} {} {:?} | {} tokens/step (accum {accum} × {b} × {t}) | step {:.1} ms (median of {}) | {:.0} tok/s",
        cfg.name,
        cfg.optim.name,
        crate::device::describe(&device),
        compute,
        cfg.train.batch_tokens,
        med * 1e3,
        times.len(),
        tok
    );
    if let Some(peak) = a.peak_tflops {
        let mfu = flops_per_token(&cfg.model) * tok / (peak * 1e12);
        println!("          MFU {:.1}% (of {peak} TFLOP/s)", mfu * 100.0);
    }
    if a.peer && !matches!(cfg.optim.name, optim::Method::Muon | optim::Method::AdamW) {
        println!("pytorch   peer implements muon and adamw only; rerun with --optim muon or adamw to compare");
    } else if a.peer {
        let threads = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            });
        let m = &cfg.model;
        let out = Command::new(&a.python)
            .arg("scripts/bench_torch.py")
            .args([
                "--n-layer",
                &m.n_layer.to_string(),
                "--n-head",
                &m.n_head.to_string(),
            ])
            .args([
                "--n-embd",
                &m.n_embd.to_string(),
                "--seq-len",
                &t.to_string(),
            ])
            .args([
                "--vocab",
                &m.vocab_size.to_string(),
                "--batch",
                &b.to_string(),
            ])
            .args([
                "--accum",
                &accum.to_string(),
                "--steps",
                &a.steps.to_string(),
            ])
            .args([
                "--warmup",
                &a.warmup.to_string(),
                "--threads",
                &threads.to_string(),
            ])
            .args(["--device", if device.is_cuda() { "cuda" } else { "cpu" }])
            .args([
                "--precision",
                if compute == DType::BF16 {
                    "bf16"
                } else {
                    "fp32"
                },
            ])
            .args(["--optim", cfg.optim.name.name()])
            // On a GPU the peer is PyTorch at its best: torch.compile, as modded-nanogpt runs it.
            .args(if device.is_cuda() {
                &["--compile"][..]
            } else {
                &[][..]
            })
            .output()
            .with_context(|| {
                format!(
                    "{}: cannot run the PyTorch peer (create the venv: scripts/setup-venv.sh)",
                    a.python.display()
                )
            })?;
        if !out.status.success() {
            bail!(
                "PyTorch peer failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .unwrap_or("");
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("peer printed no JSON: {text}"))?;
        let peer_ms = v
            .get("step_ms")
            .and_then(|x| x.as_f64())
            .ok_or_else(|| anyhow!("peer JSON lacks step_ms: {line}"))?;
        println!(
            "pytorch   {} | step {:.1} ms | {:.0} tok/s | speedrun/pytorch time = {:.2}",
            v.get("label").and_then(|x| x.as_str()).unwrap_or("torch"),
            peer_ms,
            cfg.train.batch_tokens as f64 / (peer_ms / 1e3),
            med * 1e3 / peer_ms
        );
    }
    Ok(())
}

fn bench_optim(a: OptimBench) -> Result<()> {
    let exec = a.dev.resolve()?;
    let device = exec.device.clone();
    let d = a.n_embd;
    let mut shapes = Vec::new();
    for _ in 0..a.n_layer {
        shapes.extend([(3 * d, d), (d, d), (4 * d, d), (d, 4 * d)]);
    }
    let mut methods = a.methods.clone();
    if !methods.contains(&optim::Method::Muon) {
        methods.insert(0, optim::Method::Muon);
    }
    let mut rows = Vec::new();
    for m in &methods {
        let ms = optim::bench::bench_step(*m, &exec.device, exec.ns_dtype, &shapes, a.iters)?;
        rows.push((*m, ms));
    }
    let muon = rows
        .iter()
        .find(|(m, _)| *m == optim::Method::Muon)
        .map(|r| r.1)
        .unwrap_or(f64::NAN);
    println!(
        "optimizer step on {} matrices ({}x{} layers/width), {}",
        shapes.len(),
        a.n_layer,
        d,
        crate::device::describe(&device)
    );
    println!("{:<12} {:>12} {:>10}", "method", "ms/step", "vs muon");
    for (m, ms) in rows {
        println!("{:<12} {:>12.1} {:>9.2}x", m.name(), ms, ms / muon);
    }
    Ok(())
}
