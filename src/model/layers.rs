//! Primitive-op building blocks of the GPT (record 4's and Track 3's).
//!
//! candle's fused `rms_norm`, `softmax_last_dim` and `rope*` kernels have no backward and silently
//! cut the gradient (docs/candle.md §1), so everything here is composed from
//! elementwise/reduce/matmul ops that all carry a backward.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};

/// Weightless RMSNorm, `x · rsqrt(mean(x²) + 1e-6)` over the last dim, computed in fp32
/// (docs/model.md, "Normalisation"). Returns fp32 whatever the input dtype.
pub fn rms_norm(x: &Tensor) -> Result<Tensor> {
    norm(x, None, super::arch::RECORD4_NORM_EPS)
}

/// RMSNorm `x · rsqrt(mean(x²) + eps) · gains` over the last dim, computed in fp32 as
/// PyTorch's `F.rms_norm` does (normalise, then multiply by the weight), with `gains` (d) when
/// given. Returns fp32 whatever the input dtype.
pub fn norm(x: &Tensor, gains: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (ms + eps)?.sqrt()?.recip()?;
    let y = x.broadcast_mul(&inv)?;
    Ok(match gains {
        Some(g) => y.broadcast_mul(&g.to_dtype(DType::F32)?)?,
        None => y,
    })
}

/// Softmax over the last dim, in fp32 (input is cast). The row max is detached: softmax is
/// invariant to the shift, so the max needs no gradient and its backward would only cost time.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&s)?)
}

/// `x @ wᵀ` for a torch.nn.Linear weight `w` of shape (out, in); `x` is (.., in). The weight is
/// cast to `compute` here (mixed precision: fp32 master weights, `to_dtype` has a backward,
/// docs/candle.md §10), as is `x`. Output is in `compute`.
pub fn linear(x: &Tensor, w: &Tensor, compute: DType) -> Result<Tensor> {
    let x = x.to_dtype(compute)?;
    let w = w.to_dtype(compute)?;
    let dims = x.dims().to_vec();
    let in_f = *dims.last().expect("linear input has rank >= 1");
    let n: usize = dims[..dims.len() - 1].iter().product();
    // Flatten to 2-D so the matmul is one GEMM against the transposed (free, strided) weight.
    let y = x.reshape((n, in_f))?.matmul(&w.t()?)?;
    let mut out_dims = dims;
    *out_dims.last_mut().unwrap() = w.dim(0)?;
    Ok(y.reshape(out_dims)?)
}

/// `x @ wᵀ + b` ([`linear`], then the bias cast to `compute` and added when given).
pub fn linear_b(x: &Tensor, w: &Tensor, b: Option<&Tensor>, compute: DType) -> Result<Tensor> {
    let y = linear(x, w, compute)?;
    Ok(match b {
        Some(b) => y.broadcast_add(&b.to_dtype(compute)?)?,
        None => y,
    })
}

/// The logit softcap `c·z/√(z² + c²)` in fp32, as Track 3 writes it: `15 * z * rsqrt(z² + 225)`
/// (train_gpt_simple.py:155).
pub fn softcap(z: &Tensor, c: f64) -> Result<Tensor> {
    let z = z.to_dtype(DType::F32)?;
    let r = (z.sqr()? + c * c)?.sqrt()?.recip()?;
    Ok((z * c)?.mul(&r)?)
}

/// The rotary frequencies of one head: `base^(−2j/head_dim)` for j < head_dim/2 (record 4), or
/// Track 3's half-truncated layout, `(1/1024)^(j/(head_dim/4 − 1))` for j < head_dim/4 (torch's
/// linspace(0, 1) in fp32) followed by head_dim/4 zeros (docs/model.md, "Rotary").
pub fn rotary_freqs(head_dim: usize, base: f64, layout: super::arch::Rotary) -> Vec<f32> {
    let half = head_dim / 2;
    match layout {
        super::arch::Rotary::Full => {
            let base = base as f32;
            (0..half)
                .map(|j| 1.0 / base.powf((2 * j) as f32 / head_dim as f32))
                .collect()
        }
        super::arch::Rotary::HalfTruncated => {
            let q = head_dim / 4;
            let mut f: Vec<f32> = linspace01(q)
                .into_iter()
                .map(|x| (1.0f32 / 1024.0).powf(x))
                .collect();
            f.resize(half, 0.0);
            f
        }
    }
}

/// torch.linspace(0, 1, n) in fp32: `start + i·step` in the first half and `end − (n−1−i)·step`
/// in the second, step = 1/(n − 1) (aten's linspace kernel).
fn linspace01(n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![0.0];
    }
    let step = 1.0f32 / (n - 1) as f32;
    (0..n)
        .map(|i| {
            if i < n / 2 {
                i as f32 * step
            } else {
                1.0 - (n - 1 - i) as f32 * step
            }
        })
        .collect()
}

/// Rotary cos/sin tables for positions 0..t, each (t, head_dim/2) fp32 on `device`, from the
/// frequencies of [`rotary_freqs`]: angle = pos · freq_j, evaluated in f32 like the PyTorch
/// references (`scripts/gpt_ref.py::rotary_tables`, Track 3's `Rotary.forward`).
pub fn rotary_tables(
    t: usize,
    head_dim: usize,
    base: f64,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    rotary_tables_of(
        t,
        &rotary_freqs(head_dim, base, super::arch::Rotary::Full),
        device,
    )
}

/// [`rotary_tables`] for given frequencies.
pub fn rotary_tables_of(t: usize, inv_freq: &[f32], device: &Device) -> Result<(Tensor, Tensor)> {
    let half = inv_freq.len();
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for pos in 0..t {
        for f in inv_freq {
            let a = pos as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (t, half), device)?,
        Tensor::from_vec(sin, (t, half), device)?,
    ))
}

/// Apply rotary embeddings to `x` of shape (B, H, T, head_dim) with `cos`/`sin` of shape
/// (T, head_dim/2), half-split layout and the record's sign convention:
/// y1 = x1·cos + x2·sin, y2 = −x1·sin + x2·cos (x1 = first half of the channels).
/// Computed and returned in fp32 (docs/model.md, "Rotary": cos/sin in fp32); the caller casts.
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let hd = x.dim(D::Minus1)?;
    let half = hd / 2;
    let xf = x.to_dtype(DType::F32)?;
    let x1 = xf.narrow(D::Minus1, 0, half)?;
    let x2 = xf.narrow(D::Minus1, half, half)?;
    let y1 = (x1.broadcast_mul(cos)? + x2.broadcast_mul(sin)?)?;
    let y2 = (x2.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
    Ok(Tensor::cat(&[y1, y2], D::Minus1)?)
}

/// Additive causal mask (t, t) in fp32: 0 on and below the diagonal, −∞ above it.
pub fn causal_mask(t: usize, device: &Device) -> Result<Tensor> {
    let m: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(m, (t, t), device)?)
}
