//! Fused per-row cross-entropy for fp32 logits on the CPU (candle `CustomOp2`).
//!
//! `loss_i = logsumexp(logits_i) − logits_i[target_i]`, for logits (N, V) f32 and targets (N,) u32.
//! candle_nn's composite (log_softmax + gather) makes several full (N × V) fp32 passes and keeps
//! (N × V) intermediates for the backward; this op reads each row twice in the forward (max, then
//! Σ exp(x − max)) and, in the backward, reads it once and writes the gradient once:
//! `grad_i = (softmax(logits_i) − onehot(target_i)) · grad_res_i` (the target entry as
//! `−grad_res_i · Σ_{j≠t} softmax_j`, accumulated in f64 in the same pass).
//!
//! Stash rather than recompute: the forward already has each row's max and ln Σ exp(x − max); the op
//! keeps them (8 bytes a row) in a `OnceLock` inside the op instance, which candle's graph holds for
//! exactly the one result tensor it made. Recomputing them in `bwd` would cost two more full read
//! passes over (N × V). If the stash is missing or does not match (cannot happen through candle's
//! graph, kept as a guard), `bwd` recomputes the row statistics. The stash describes the logits as
//! they were in the forward: mutating them in place (a `Var::set` of the logits themselves) before
//! the backward would make the gradient stale, as it would for any saved-activation backward.
//!
//! Accumulation: `exp` in f32, the row sum in f64. A plain f32 running sum over 50257 terms is
//! off by 1.1e-5 in ln Σ; the f64 sum by 4.5e-7, i.e. the final f32 rounding
//! (`tests::xent::f32_accumulation_error_is_measured`); an f64 add per element is cheap next to `exp`.
//!
//! CPU only: `cuda_fwd` is not implemented. [`cross_entropy`] is the entry point the model uses:
//! it takes this op for fp32 logits on the CPU and candle_nn's composite path everywhere else.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, DType, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

use crate::cpu::{f32_data, vmath};

/// Per-row statistics of a forward: (row max, ln Σ exp(x − max)).
type RowStats = Vec<(f32, f32)>;

/// The fused cross-entropy op. Build a fresh one per call ([`cross_entropy_rows`]).
#[derive(Default)]
pub(crate) struct FusedXent {
    stats: OnceLock<RowStats>,
}

/// Row max and ln Σ exp(x − max) (exp in f32, sum in f64).
fn row_stats(row: &[f32]) -> (f32, f32) {
    let max = vmath::max(row);
    (max, vmath::sum_exp_shifted(row, max).ln() as f32)
}

/// Σ_{j≠t} o_j in f64, summed without o_t (not as Σ − o_t, which cancels when o_t ≈ Σ).
fn sum_except(o: &[f32], t: usize) -> f64 {
    vmath::sum_f64(&o[..t]) + vmath::sum_f64(&o[t + 1..])
}

/// One row's gradient `(softmax(row) − onehot(t)) · g` into `o`, from its (max, lse). Every entry
/// but the target gets softmax · g; the target gets −g · Σ_{j≠t} p_j, which stays accurate when
/// p_t rounds to 1 (a confident row), unlike (p_t − 1) · g.
fn row_grad(o: &mut [f32], row: &[f32], (max, lse): (f32, f32), t: usize, g: f32) {
    // p_j = exp(x_j − max)·e^−lse: the shift stays the exact max, as in the forward's sum.
    let inv = (-(lse as f64)).exp();
    vmath::exp_shifted(o, row, max);
    let others = sum_except(o, t) * inv;
    vmath::scale_in_place(o, (g as f64 * inv) as f32);
    o[t] = (-(others * g as f64)) as f32;
}

/// One row's loss, and its gradient `(softmax − onehot) · g` into `o`, with one `exp` per entry:
/// `o` first holds e_j = exp(x_j − max) while their sum accumulates (f64), then is scaled by
/// g / Σ. The target entry is −g · (Σ − e_t) / Σ, as in [`row_grad`].
pub(crate) fn row_loss_and_grad(o: &mut [f32], row: &[f32], t: usize, g: f32) -> f32 {
    let max = vmath::max(row);
    vmath::exp_shifted(o, row, max);
    let others = sum_except(o, t);
    let sum = others + o[t] as f64;
    vmath::scale_in_place(o, (g as f64 / sum) as f32);
    o[t] = (-(others / sum) * g as f64) as f32;
    ((max - row[t]) as f64 + sum.ln()) as f32
}

/// [`row_loss_and_grad`] with the logits' own row as `o`: the row becomes its gradient.
pub(crate) fn row_loss_and_grad_in_place(x: &mut [f32], t: usize, g: f32) -> f32 {
    let (max, xt) = (vmath::max(x), x[t]);
    vmath::exp_shifted_in_place(x, max);
    let others = sum_except(x, t);
    let sum = others + x[t] as f64;
    vmath::scale_in_place(x, (g as f64 / sum) as f32);
    x[t] = (-(others / sum) * g as f64) as f32;
    ((max - xt) as f64 + sum.ln()) as f32
}

/// Per-row loss (N,) and its gradient `scale · (softmax − onehot)` (N, V) of contiguous fp32 CPU
/// `logits` against u32 `targets`, in one stats pass and one gradient pass: what the fused op's
/// forward and backward compute, for a caller that needs the gradient straight away (the
/// chunked head, `head.rs`).
pub(crate) fn cpu_rows_and_grad(
    logits: &Tensor,
    targets: &Tensor,
    scale: f32,
) -> Result<(Tensor, Tensor)> {
    let (ls, ll) = logits.storage_and_layout();
    let (ts, tl) = targets.storage_and_layout();
    let (ls, ts) = match (&*ls, &*ts) {
        (Storage::Cpu(a), Storage::Cpu(b)) => (a, b),
        _ => bail!("fused_xent: CPU tensors expected"),
    };
    let (n, v, t) = check(ll, ts, tl)?;
    let x = f32_data(ls, ll, "fused_xent: logits")?;
    if v == 0 {
        bail!("fused_xent: empty vocabulary");
    }
    let mut grad = vec![0f32; n * v];
    let loss: Vec<f32> = grad
        .par_chunks_exact_mut(v)
        .zip(x.par_chunks_exact(v))
        .zip(t.par_iter())
        .map(|((o, row), &t)| row_loss_and_grad(o, row, t as usize, scale))
        .collect();
    Ok((
        Tensor::from_vec(loss, n, logits.device())?,
        Tensor::from_vec(grad, (n, v), logits.device())?,
    ))
}

/// Validated (N, V) and the target slice.
fn check<'a>(
    ll: &Layout,
    targets: &'a CpuStorage,
    tl: &Layout,
) -> Result<(usize, usize, &'a [u32])> {
    let (n, v) = ll.shape().dims2()?;
    let t = match targets {
        CpuStorage::U32(d) => d,
        _ => bail!("fused_xent: targets must be u32, got {:?}", targets.dtype()),
    };
    let t = match tl.contiguous_offsets() {
        Some((a, b)) => &t[a..b],
        None => bail!("fused_xent: targets must be contiguous"),
    };
    if t.len() != n || tl.shape().rank() != 1 {
        bail!(
            "fused_xent: targets shape {:?} does not match logits rows {n}",
            tl.shape()
        );
    }
    if let Some((i, &bad)) = t.iter().enumerate().find(|(_, &x)| x as usize >= v) {
        bail!("fused_xent: target {bad} at row {i} is out of range for vocab {v}");
    }
    Ok((n, v, t))
}

impl CustomOp2 for FusedXent {
    fn name(&self) -> &'static str {
        "fused_xent"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, v, targets) = check(l1, s2, l2)?;
        let logits = f32_data(s1, l1, "fused_xent: logits")?;
        if v == 0 {
            bail!("fused_xent: empty vocabulary");
        }
        let (loss, stats): (Vec<f32>, RowStats) = logits
            .par_chunks_exact(v)
            .zip(targets.par_iter())
            .map(|(row, &t)| {
                let (max, lse) = row_stats(row);
                let loss = ((max - row[t as usize]) as f64 + lse as f64) as f32;
                (loss, (max, lse))
            })
            .unzip();
        // A second forward through the same instance cannot happen via `Tensor::apply_op2`;
        // keep the first stash if it does (bwd checks the length and recomputes otherwise).
        let _ = self.stats.set(stats);
        Ok((CpuStorage::F32(loss), Shape::from(n)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g: Vec<f32> = grad_res.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let tgt = targets.contiguous()?;
        let logits_c = logits.contiguous()?;
        let (ls, ll) = logits_c.storage_and_layout();
        let (ts, tl) = tgt.storage_and_layout();
        let (ls, ts) = match (&*ls, &*ts) {
            (Storage::Cpu(a), Storage::Cpu(b)) => (a, b),
            _ => bail!("fused_xent: backward is CPU only"),
        };
        let (n, v, targets) = check(ll, ts, tl)?;
        let x = f32_data(ls, ll, "fused_xent: logits")?;
        if g.len() != n {
            bail!("fused_xent: grad has {} entries for {n} rows", g.len());
        }
        let recomputed;
        let stats: &RowStats = match self.stats.get() {
            Some(s) if s.len() == n => s,
            _ => {
                recomputed = x.par_chunks_exact(v).map(row_stats).collect::<RowStats>();
                &recomputed
            }
        };
        let mut out = vec![0f32; n * v];
        out.par_chunks_exact_mut(v)
            .zip(x.par_chunks_exact(v))
            .enumerate()
            .for_each(|(i, (o, row))| row_grad(o, row, stats[i], targets[i] as usize, g[i]));
        let grad = Tensor::from_vec(out, (n, v), logits.device())?;
        Ok((Some(grad), None))
    }
}

/// Per-row loss (N,) of contiguous fp32 `logits` (N, V) against u32 `targets` (N,), CPU only.
pub(crate) fn cross_entropy_rows(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    logits.apply_op2(targets, FusedXent::default())
}

/// Mean next-token cross-entropy of `logits` (B, T, V) against integer `targets` (B, T), as a
/// scalar fp32 tensor with a graph. The op picks its own path: fp32 logits on the CPU go through
/// the fused op above (per-row loss, real backward, then `.mean_all()`); any other device or dtype
/// uses candle_nn's composite cross_entropy (log_softmax + gather from primitives), since there is
/// no fused kernel for it.
pub(crate) fn cross_entropy(logits: &Tensor, targets: &Tensor) -> anyhow::Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let targets = check_targets(targets, (b, t))?;
    let logits = logits.reshape((b * t, v))?;
    if logits.device().is_cpu() && logits.dtype() == DType::F32 {
        // Two read passes forward, one read + one write backward.
        let rows = cross_entropy_rows(&logits.contiguous()?, &targets.contiguous()?)?;
        return Ok(rows.mean_all()?);
    }
    Ok(candle_nn::loss::cross_entropy(&logits, &targets)?)
}

/// `targets` of the input's shape (B, T) and of an integer dtype, flattened to (B·T,) u32.
pub(crate) fn check_targets(targets: &Tensor, (b, t): (usize, usize)) -> anyhow::Result<Tensor> {
    if targets.dims() != [b, t] {
        anyhow::bail!(
            "model: targets shape {:?} does not match idx shape ({b}, {t})",
            targets.dims()
        );
    }
    if !matches!(targets.dtype(), DType::U32 | DType::I64 | DType::U8) {
        anyhow::bail!(
            "model: targets dtype {:?} is not an integer type (expected u32)",
            targets.dtype()
        );
    }
    Ok(targets.flatten_all()?.to_dtype(DType::U32)?)
}
