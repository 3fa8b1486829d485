//! The chunked head and cross-entropy of `head.rs` as one fp32 CPU op (a candle `CustomOp2` of
//! the hidden states h (N, D) and the tied weight W (V, D)): its forward walks the tokens in
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

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::xent::row_loss_and_grad_in_place;
use crate::cpu::gemm::{mm_par, Operand};
use crate::cpu::{f32_data, vmath};

/// Mean cross-entropy of the tied head on fp32 CPU tensors: `h` (N, D), `w` (V, D), `targets`
/// (N,) u32, `chunk` tokens at a time. With `grad`, the result's backward yields the gradients
/// of `h` and `w`.
pub(crate) fn head_loss(
    h: &Tensor,
    w: &Tensor,
    targets: &Tensor,
    chunk: usize,
    grad: bool,
) -> anyhow::Result<Tensor> {
    let targets = targets.flatten_all()?.to_vec1::<u32>()?;
    let op = HeadLoss {
        targets,
        chunk: chunk.max(1),
        grad,
        grads: Mutex::new(None),
    };
    // Without gradients, no graph: the op sees detached inputs.
    let (h, w) = if grad {
        (h.clone(), w.clone())
    } else {
        (h.detach(), w.detach())
    };
    Ok(h.contiguous()?.apply_op2(&w.contiguous()?, op)?)
}

/// (G_h, G_W), row-major.
type HeadGrads = (Vec<f32>, Vec<f32>);

struct HeadLoss {
    targets: Vec<u32>,
    chunk: usize,
    grad: bool,
    /// (G_h, G_W) of the forward, taken by the backward.
    grads: Mutex<Option<HeadGrads>>,
}

impl HeadLoss {
    /// The loss, and (G_h, G_W) when `self.grad`.
    fn forward(
        &self,
        h: &[f32],
        w: &[f32],
        (n, v, d): (usize, usize, usize),
    ) -> Result<(f32, Option<HeadGrads>)> {
        if let Some(&t) = self.targets.iter().find(|&&t| t as usize >= v) {
            bail!("model: target id {t} outside the vocabulary of {v}");
        }
        let scale = 1.0 / n as f32;
        let mut buf = vec![0f32; self.chunk.min(n) * v];
        let mut grads = self.grad.then(|| (vec![0f32; n * d], vec![0f32; v * d]));
        let mut losses = Vec::with_capacity(n);
        for start in (0..n).step_by(self.chunk) {
            let c = self.chunk.min(n - start);
            let (hc, logits) = (&h[start * d..(start + c) * d], &mut buf[..c * v]);
            mm_par(
                (c, v, d),
                logits,
                v,
                false,
                1.0,
                Operand::rows(hc, d),
                Operand::transposed(w, d),
            );
            let targets = &self.targets[start..start + c];
            let Some((gh, gw)) = grads.as_mut() else {
                losses.par_extend(logits.par_chunks(v).zip(targets).map(|(row, &t)| {
                    let max = vmath::max(row);
                    ((max - row[t as usize]) as f64 + vmath::sum_exp_shifted(row, max).ln()) as f32
                }));
                continue;
            };
            losses.par_extend(
                logits
                    .par_chunks_mut(v)
                    .zip(targets)
                    .map(|(row, &t)| row_loss_and_grad_in_place(row, t as usize, scale)),
            );
            let dl = &buf[..c * v];
            mm_par(
                (c, d, v),
                &mut gh[start * d..(start + c) * d],
                d,
                false,
                1.0,
                Operand::rows(dl, v),
                Operand::rows(w, d),
            );
            mm_par(
                (v, d, c),
                gw,
                d,
                start > 0,
                1.0,
                Operand::transposed(dl, v),
                Operand::rows(hc, d),
            );
        }
        let loss = losses.iter().map(|&x| x as f64).sum::<f64>() * scale as f64;
        Ok((loss as f32, grads))
    }
}

impl CustomOp2 for HeadLoss {
    fn name(&self) -> &'static str {
        "head_loss"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, d) = l1.shape().dims2()?;
        let (v, d2) = l2.shape().dims2()?;
        if d != d2 || n != self.targets.len() || n == 0 {
            bail!(
                "model: head inputs {:?}, {:?} and {} targets do not fit",
                l1.dims(),
                l2.dims(),
                self.targets.len()
            );
        }
        let h = f32_data(s1, l1, "head input")?;
        let w = f32_data(s2, l2, "tied weight")?;
        let (loss, grads) = self.forward(h, w, (n, v, d))?;
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
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, d) = h.dims2()?;
        let v = w.dim(0)?;
        let stashed = self
            .grads
            .lock()
            .map_err(|_| candle_core::Error::Msg("head_loss: poisoned".into()))?
            .take();
        let (mut gh, mut gw) = match stashed {
            Some(g) => g,
            None => {
                // A second backward through the same graph: compute them again.
                let (hs, ws) = (
                    h.flatten_all()?.to_vec1::<f32>()?,
                    w.flatten_all()?.to_vec1::<f32>()?,
                );
                match self.forward(&hs, &ws, (n, v, d))?.1 {
                    Some(g) => g,
                    None => bail!("head_loss: backward of a loss built without gradients"),
                }
            }
        };
        let k = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        if k != 1.0 {
            vmath::scale_in_place(&mut gh, k);
            vmath::scale_in_place(&mut gw, k);
        }
        let dev = h.device();
        Ok((
            Some(Tensor::from_vec(gh, (n, d), dev)?),
            Some(Tensor::from_vec(gw, (v, d), dev)?),
        ))
    }
}
