//! Optimizer step timing for `speedrun bench optim`.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, Var};

use super::{build, Grads, Method, OptimConfig, EMBEDDING};

/// PyTorch-style names for bench shapes so routing (head, packed QKV split, block-diagonal
/// statistics) behaves as in training: a shape with rows ≥ 10·cols is the embedding/head,
/// (3c, c) c_attn, (c, c) attn.c_proj, (4c, c) mlp.c_fc, (c, 4c) mlp.c_proj; anything else gets
/// a generic block name.
pub fn bench_names(shapes: &[(usize, usize)]) -> Result<Vec<String>> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Vec::new();
    let mut head = false;
    for &(r, c) in shapes {
        let kind = if r >= 10 * c && !head {
            head = true;
            out.push(EMBEDDING.to_string());
            continue;
        } else if r == 3 * c {
            "attn.c_attn"
        } else if r == c {
            "attn.c_proj"
        } else if r == 4 * c {
            "mlp.c_fc"
        } else if 4 * r == c {
            "mlp.c_proj"
        } else {
            "other"
        };
        let i = counts.entry(kind).or_insert(0);
        out.push(format!("transformer.h.{i}.{kind}.weight"));
        *i += 1;
    }
    if out.iter().collect::<std::collections::BTreeSet<_>>().len() != out.len() {
        bail!("bench shapes give duplicate parameter names");
    }
    Ok(out)
}

/// Random weights (σ 0.02) and gradients (σ ~1e-3) of the given shapes under [`bench_names`].
pub fn bench_params(
    device: &Device,
    shapes: &[(usize, usize)],
) -> Result<(BTreeMap<String, Var>, Grads)> {
    let names = bench_names(shapes)?;
    let mut params = BTreeMap::new();
    let mut grads = Grads::new();
    for (k, (name, &(r, c))) in names.iter().zip(shapes).enumerate() {
        let w = Tensor::randn(0f32, 0.02, (r, c), device)?;
        params.insert(name.clone(), Var::from_tensor(&w)?);
        grads.insert(
            name.clone(),
            (Tensor::randn(0f32, 1e-3, (r, c), device)? * (1.0 + k as f64 * 1e-3))?,
        );
    }
    Ok((params, grads))
}

/// Median milliseconds of one optimizer step of `method` (a registry name, default
/// hyperparameters) over parameters of the given shapes, after one untimed warm-up step. For
/// newton-muon the steps are non-refresh steps (the per-step cost; refresh cost is amortised
/// over 32 steps). Newton–Schulz runs in bf16 on CUDA and f32 elsewhere.
pub fn bench_step(
    method: Method,
    device: &Device,
    ns_dtype: DType,
    shapes: &[(usize, usize)],
    iters: usize,
) -> Result<f64> {
    if iters == 0 {
        bail!("bench_step: iters must be ≥ 1");
    }
    let (params, grads) = bench_params(device, shapes)?;
    let cfg = OptimConfig {
        name: method,
        ..OptimConfig::default()
    };
    let mut set = build(&cfg, &params, ns_dtype)?;
    // Warm-up: allocations, kernel compilation, and newton-muon's step-0 refresh (no inputs).
    set.step(&grads, 1.0)?;
    device.synchronize()?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t0 = Instant::now();
        set.step(&grads, 1.0)?;
        device.synchronize()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Ok(times[times.len() / 2])
}
