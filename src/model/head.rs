//! The head and the cross-entropy, token chunk by token chunk, so that the (tokens × vocab)
//! logits never exist whole (the "fused linear cross-entropy" of Liger-Kernel and others).
//!
//! At vocab 50257 the head is most of a small preset's FLOPs, and its logits are the largest
//! buffers of a step: 2,048 tokens × 50257 × 4 bytes = 412 MB, written by the matmul, read by the
//! softmax, written again as their gradient and read twice by the backward GEMMs. Here each chunk
//! of `chunk` tokens computes its logits, its loss rows and, for a training loss, their gradient
//! `(softmax − onehot) / N` at once; the chunk's hidden-state gradient `dL·W` and its share of the
//! weight gradient `dLᵀ·h` follow straight away, and the chunk's buffers are freed. The FLOPs are
//! those of the unchunked head (one forward GEMM, two backward GEMMs); nothing is recomputed,
//! because the loss is the last op of the graph and its gradient is known in the forward.
//!
//! The head may have a bias and a logit softcap (Track 3), whose gradients the chunk computes the
//! same way (G_b = Σ rows of dL; dL/dz = dL/ds · s'(z)).
//!
//! The gradients reach candle's autograd through a surrogate: `L + (s − detach(s))` with
//! `s = Σ h·G_h + Σ W·G_W (+ Σ b·G_b)`. Its value is exactly `L` (x − x = 0, and L + 0 = L), and its gradient
//! with respect to `h` and `W` is exactly `G_h` and `G_W`, so the backward of the layers below
//! and of the embedding (which shares `W`) runs unchanged. The numerics per chunk are the fused
//! CPU op's (`xent.rs`) on fp32 CPU logits and candle_nn's composite cross-entropy elsewhere
//! (CUDA), both of which the tests check against the unchunked loss and its gradients.

use anyhow::Result;
use candle_core::{DType, Tensor, Var};

use super::{head_cpu, xent};

/// Tokens per chunk: a (256 × 50257) fp32 chunk of logits is 51 MB, small enough to stay out of
/// the way and large enough that each GEMM runs at full speed.
pub const HEAD_CHUNK_TOKENS: usize = 1024;

/// The head a loss is computed through: `z = h·Wᵀ + b`, then the softcap `c·z/√(z² + c²)` when
/// `softcap` > 0 (Track 3), then the cross-entropy, summed over tokens or averaged.
pub(crate) struct Head {
    /// (V, D): the untied head, or the embedding of a tied model.
    pub w: Tensor,
    pub b: Option<Tensor>,
    pub softcap: f64,
    pub sum: bool,
}

/// Next-token cross-entropy through `head`: `h` (N, D) hidden states, `targets` (N,) u32, the
/// GEMMs in `compute`; the mean or the sum over tokens as `head.sum` says. With `grad`, the
/// result carries the gradients described above; without, it is a plain value.
pub(crate) fn head_loss(
    h: &Tensor,
    head: &Head,
    targets: &Tensor,
    compute: DType,
    chunk: usize,
    grad: bool,
) -> Result<Tensor> {
    let (n, _) = h.dims2()?;
    if n == 0 {
        anyhow::bail!("model: a batch without tokens");
    }
    if h.device().is_cpu() && compute == DType::F32 && head.w.dtype() == DType::F32 {
        return head_cpu::head_loss(h, head, targets, chunk, grad);
    }
    composite_head_loss(h, head, targets, compute, chunk, grad)
}

/// [`head_loss`] from candle ops, chunk by chunk, on any device (the CUDA path; the tests run it
/// on the CPU against the fused op).
pub(crate) fn composite_head_loss(
    h: &Tensor,
    head: &Head,
    targets: &Tensor,
    compute: DType,
    chunk: usize,
    grad: bool,
) -> Result<Tensor> {
    let (n, _) = h.dims2()?;
    let w = &head.w;
    let chunk = chunk.max(1);
    let (hd, wc) = (h.detach(), w.detach().to_dtype(compute)?);
    let bc = head
        .b
        .as_ref()
        .map(|b| b.detach().to_dtype(DType::F32))
        .transpose()?;
    let scale = if head.sum { 1.0 } else { 1.0 / n as f64 };
    let mut loss_sum: Option<Tensor> = None;
    let mut grad_h = Vec::with_capacity(n.div_ceil(chunk));
    let (mut grad_w, mut grad_b): (Option<Tensor>, Option<Tensor>) = (None, None);
    for start in (0..n).step_by(chunk) {
        let c = chunk.min(n - start);
        let hc = hd.narrow(0, start, c)?.to_dtype(compute)?;
        let tc = targets.narrow(0, start, c)?;
        let mut z = hc.matmul(&wc.t()?)?.to_dtype(DType::F32)?;
        if let Some(b) = &bc {
            z = z.broadcast_add(b)?;
        }
        let logits = if head.softcap > 0.0 {
            super::layers::softcap(&z, head.softcap)?
        } else {
            z.clone()
        };
        let rows = if grad {
            let (rows, mut dl) = rows_and_grad(&logits, &tc, scale)?;
            if head.softcap > 0.0 {
                dl = (dl * softcap_slope(&z, head.softcap)?)?;
            }
            if bc.is_some() {
                add_to(&mut grad_b, dl.sum(0)?)?;
            }
            let dl = dl.to_dtype(compute)?;
            grad_h.push(dl.matmul(&wc)?.to_dtype(DType::F32)?);
            add_to(&mut grad_w, dl.t()?.matmul(&hc)?.to_dtype(DType::F32)?)?;
            rows
        } else {
            rows_only(&logits, &tc)?
        };
        add_to(&mut loss_sum, rows.sum_all()?)?;
    }
    let loss = (loss_sum.expect("at least one chunk") * scale)?;
    let Some(grad_w) = grad_w else {
        return Ok(loss);
    };
    let grad_h = Tensor::cat(&grad_h, 0)?;
    let mut s = ((h * &grad_h)?.sum_all()? + (w * grad_w.to_dtype(w.dtype())?)?.sum_all()?)?;
    if let (Some(b), Some(gb)) = (&head.b, grad_b) {
        s = (s + (b * gb.to_dtype(b.dtype())?)?.sum_all()?)?;
    }
    Ok((loss + (&s - s.detach())?)?)
}

/// `acc += x` (or `acc = x` the first time).
fn add_to(acc: &mut Option<Tensor>, x: Tensor) -> Result<()> {
    *acc = Some(match acc.take() {
        Some(a) => (a + x)?,
        None => x,
    });
    Ok(())
}

/// d/dz of the softcap c·z/√(z² + c²): c³/(z² + c²)^{3/2} = (c·r)³ with r = 1/√(z² + c²).
fn softcap_slope(z: &Tensor, c: f64) -> Result<Tensor> {
    let r = (z.sqr()? + c * c)?.sqrt()?.recip()?;
    Ok((r * c)?.powf(3.0)?)
}

/// Loss rows (c,) and `scale · (softmax − onehot)` (c, V) of one chunk of fp32 logits.
pub(crate) fn rows_and_grad(
    logits: &Tensor,
    targets: &Tensor,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    if logits.device().is_cpu() {
        return Ok(xent::cpu_rows_and_grad(
            &logits.contiguous()?,
            &targets.contiguous()?,
            scale as f32,
        )?);
    }
    composite_rows_and_grad(logits, targets, scale)
}

/// [`rows_and_grad`] from candle ops on any device: the composite cross-entropy, differentiated
/// by candle on this chunk alone (the Var is a copy of one chunk's logits).
pub(crate) fn composite_rows_and_grad(
    logits: &Tensor,
    targets: &Tensor,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    let v = Var::from_tensor(logits)?;
    let rows = per_row_composite(v.as_tensor(), targets)?;
    let grads = (rows.sum_all()? * scale)?.backward()?;
    let dl = grads
        .get(v.as_tensor())
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("model: no gradient for the head's logits"))?;
    Ok((rows.detach(), dl))
}

/// Loss rows (c,) of one chunk of fp32 logits, no gradient.
fn rows_only(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.device().is_cpu() {
        return Ok(xent::cross_entropy_rows(
            &logits.contiguous()?,
            &targets.contiguous()?,
        )?);
    }
    per_row_composite(logits, targets)
}

/// `logsumexp(x) − x[target]` per row from candle ops (any device).
fn per_row_composite(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, candle_core::D::Minus1)?;
    Ok(logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?)
}
