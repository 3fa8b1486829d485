//! The chunked head and cross-entropy of `head.rs` as one fp32 CPU op (a candle `CustomOp3` of
//! the hidden states h (N, D), the head's weight W (V, D) and its bias b (V, or empty)): its forward walks the tokens in
//! chunks through one reused (chunk × V) buffer — logits by GEMM, then in place each row's loss
//! and its gradient `(softmax − onehot)/N` — and accumulates the gradients G_h = dL·W and
//! G_W = Σ dLᵀ·h straight into their final buffers (the GEMM adds into G_W). Its backward hands
//! those buffers to candle as they are (scaled only when the loss was scaled).
//!
//! Why not `head.rs`'s candle version on the CPU: there every chunk allocated its logits and its
//! gradient, the G_W of each chunk was a new (V × D) tensor added to the running one, and the
//! surrogate `Σ W·G_W` cost candle's backward four more (V × D) passes — 154 MB each for the
//! 124M model. The values are the same computation in the same order per row (checked against
//! the unchunked loss in `tests/head.rs`).

use std::sync::Mutex;

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::head::Head;
use super::xent::row_loss_and_grad_in_place;
use crate::cpu::gemm::{mm_par, Operand};
use crate::cpu::{f32_data, vmath};

/// The cross-entropy through `head` on fp32 CPU tensors: `h` (N, D), the head's (V, D) weight
/// and optional (V) bias, `targets` (N,) u32, `chunk` tokens at a time; the mean or the sum over
/// tokens. With `grad`, the result's backward yields the gradients of `h`, the weight and the
/// bias.
pub(crate) fn head_loss(
    h: &Tensor,
    head: &Head,
    targets: &Tensor,
    chunk: usize,
    grad: bool,
) -> anyhow::Result<Tensor> {
    let targets = targets.flatten_all()?.to_vec1::<u32>()?;
    let op = HeadLoss {
        targets,
        chunk: chunk.max(1),
        grad,
        softcap: head.softcap as f32,
        sum: head.sum,
        grads: Mutex::new(None),
    };
    // Without a bias the third input is an empty placeholder that gets no gradient.
    let b = match &head.b {
        Some(b) => b.clone(),
        None => Tensor::zeros(0, candle_core::DType::F32, h.device())?,
    };
    // Without gradients, no graph: the op sees detached inputs.
    let (h, w, b) = if grad {
        (h.clone(), head.w.clone(), b)
    } else {
        (h.detach(), head.w.detach(), b.detach())
    };
    Ok(h.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, op)?)
}

/// (G_h, G_W, G_b), row-major.
type HeadGrads = (Vec<f32>, Vec<f32>, Vec<f32>);

struct HeadLoss {
    targets: Vec<u32>,
    chunk: usize,
    grad: bool,
    /// The logit softcap c (0: none).
    softcap: f32,
    /// The sum over tokens rather than the mean.
    sum: bool,
    /// The forward's gradients, taken by the backward.
    grads: Mutex<Option<HeadGrads>>,
}

/// One row of logits `z` in place: the bias added, then the softcap `s = (c·z)·r` with
/// r = 1/√(z² + c²) (Track 3's `15 * z * rsqrt(z² + 225)`), its slope `(c·r)³` into `slope`.
fn bias_and_cap(z: &mut [f32], bias: &[f32], c: f32, slope: &mut [f32]) {
    if !bias.is_empty() {
        z.iter_mut().zip(bias).for_each(|(z, b)| *z += b);
    }
    if c > 0.0 {
        for (z, d) in z.iter_mut().zip(slope.iter_mut()) {
            let r = 1.0 / (*z * *z + c * c).sqrt();
            *z = c * *z * r;
            let cr = c * r;
            *d = cr * cr * cr;
        }
    }
}

/// The loss of one row of head outputs `z` (bias and softcap applied here), and, with
/// `scale`, its gradient dL/dz in place of `z`.
fn row_loss(
    z: &mut [f32],
    t: usize,
    bias: &[f32],
    c: f32,
    scale: Option<f32>,
    slope: &mut Vec<f32>,
) -> f32 {
    if c > 0.0 {
        slope.resize(z.len(), 0.0);
    }
    bias_and_cap(z, bias, c, slope);
    let Some(scale) = scale else {
        let max = vmath::max(z);
        return ((max - z[t]) as f64 + vmath::sum_exp_shifted(z, max).ln()) as f32;
    };
    let loss = row_loss_and_grad_in_place(z, t, scale);
    if c > 0.0 {
        z.iter_mut().zip(slope.iter()).for_each(|(g, d)| *g *= d);
    }
    loss
}

impl HeadLoss {
    /// The loss, and the gradients when `self.grad`.
    fn forward(
        &self,
        h: &[f32],
        w: &[f32],
        bias: &[f32],
        (n, v, d): (usize, usize, usize),
    ) -> Result<(f32, Option<HeadGrads>)> {
        if let Some(&t) = self.targets.iter().find(|&&t| t as usize >= v) {
            bail!("model: target id {t} outside the vocabulary of {v}");
        }
        let scale = if self.sum { 1.0 } else { 1.0 / n as f32 };
        let mut buf = vec![0f32; self.chunk.min(n) * v];
        let mut grads = self
            .grad
            .then(|| (vec![0f32; n * d], vec![0f32; v * d], vec![0f32; bias.len()]));
        let mut losses = Vec::with_capacity(n);
        let c = self.softcap;
        for start in (0..n).step_by(self.chunk) {
            let rows = self.chunk.min(n - start);
            let (hc, logits) = (&h[start * d..(start + rows) * d], &mut buf[..rows * v]);
            mm_par(
                (rows, v, d),
                logits,
                v,
                false,
                1.0,
                Operand::rows(hc, d),
                Operand::transposed(w, d),
            );
            let targets = &self.targets[start..start + rows];
            let g = grads.is_some().then_some(scale);
            losses.par_extend(
                logits
                    .par_chunks_mut(v)
                    .zip(targets)
                    .map_init(Vec::new, |slope, (row, &t)| {
                        row_loss(row, t as usize, bias, c, g, slope)
                    }),
            );
            let Some((gh, gw, gb)) = grads.as_mut() else {
                continue;
            };
            let dl = &buf[..rows * v];
            mm_par(
                (rows, d, v),
                &mut gh[start * d..(start + rows) * d],
                d,
                false,
                1.0,
                Operand::rows(dl, v),
                Operand::rows(w, d),
            );
            mm_par(
                (v, d, rows),
                gw,
                d,
                start > 0,
                1.0,
                Operand::transposed(dl, v),
                Operand::rows(hc, d),
            );
            if !gb.is_empty() {
                column_sums_add(gb, dl, v);
            }
        }
        let total = losses.iter().map(|&x| x as f64).sum::<f64>() * scale as f64;
        Ok((total as f32, grads))
    }
}

/// `acc[j] += Σ_i m[i][j]` for row-major `m` with `v` columns, in parallel over column blocks.
fn column_sums_add(acc: &mut [f32], m: &[f32], v: usize) {
    acc.par_chunks_mut(1024).enumerate().for_each(|(k, a)| {
        let (j0, len) = (k * 1024, a.len());
        for row in m.chunks_exact(v) {
            a.iter_mut()
                .zip(&row[j0..j0 + len])
                .for_each(|(a, x)| *a += x);
        }
    });
}

impl CustomOp3 for HeadLoss {
    fn name(&self) -> &'static str {
        "head_loss"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, d) = l1.shape().dims2()?;
        let (v, d2) = l2.shape().dims2()?;
        let nb = l3.shape().elem_count();
        if d != d2 || n != self.targets.len() || n == 0 || (nb != 0 && nb != v) {
            bail!(
                "model: head inputs {:?}, {:?}, bias {:?} and {} targets do not fit",
                l1.dims(),
                l2.dims(),
                l3.dims(),
                self.targets.len()
            );
        }
        let h = f32_data(s1, l1, "head input")?;
        let w = f32_data(s2, l2, "head weight")?;
        let b = f32_data(s3, l3, "head bias")?;
        let (loss, grads) = self.forward(h, w, b, (n, v, d))?;
        *self
            .grads
            .lock()
            .map_err(|_| candle_core::Error::Msg("head_loss: poisoned".into()))? = grads;
        Ok((CpuStorage::F32(vec![loss]), Shape::from(())))
    }

    fn bwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, d) = h.dims2()?;
        let v = w.dim(0)?;
        let stashed = self
            .grads
            .lock()
            .map_err(|_| candle_core::Error::Msg("head_loss: poisoned".into()))?
            .take();
        let (mut gh, mut gw, mut gb) = match stashed {
            Some(g) => g,
            None => {
                // A second backward through the same graph: compute them again.
                let host = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
                let (hs, ws, bs) = (host(h)?, host(w)?, host(b)?);
                match self.forward(&hs, &ws, &bs, (n, v, d))?.1 {
                    Some(g) => g,
                    None => bail!("head_loss: backward of a loss built without gradients"),
                }
            }
        };
        let k = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        if k != 1.0 {
            vmath::scale_in_place(&mut gh, k);
            vmath::scale_in_place(&mut gw, k);
            vmath::scale_in_place(&mut gb, k);
        }
        let dev = h.device();
        let gb = (!gb.is_empty())
            .then(|| Tensor::from_vec(gb, v, dev))
            .transpose()?;
        Ok((
            Some(Tensor::from_vec(gh, (n, d), dev)?),
            Some(Tensor::from_vec(gw, (v, d), dev)?),
            gb,
        ))
    }
}
