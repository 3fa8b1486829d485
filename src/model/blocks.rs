//! The two residual sub-blocks of the record-4 block as fused fp32 CPU ops, each a candle
//! `CustomOp3` with its own backward:
//!
//! - attention: `x + s·Attn(rope(RMSNorm(x)·W_attnᵀ))·W_projᵀ`, s = 1/√(2·n_layer);
//! - MLP: `x + GELU(RMSNorm(x)·W_fcᵀ)·W_projᵀ`.
//!
//! Why: built from candle primitives, each sub-block is a few dozen graph nodes, and candle's
//! backward gives every node's input a zero-filled gradient buffer before adding into it (it has
//! no in-place accumulation), copies tensors for each transpose and split, and runs each
//! elementwise op as its own pass over memory. Here a sub-block is one node: the forward makes
//! the GEMMs' operands once and keeps what the backward needs (the 1/rms rows, the rotated q and
//! k, v, the attention output and its log-sum-exp rows, the GELU output and slope), and the
//! backward writes each gradient once. The attention itself is the tiled kernel of
//! `attention.rs`. The math is `forward.rs`'s, which stays the path everywhere else (CUDA, bf16,
//! and the steps where Newton-Muon records layer inputs); `tests/blocks.rs` checks the two paths
//! against each other, values and the gradients of x and both weights.

use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::attention::{backward_all, forward_all};
use super::rows::{
    gelu_forward, merge_heads, merge_qkv_grad, rms_backward_add, rms_forward, rms_normed,
    split_heads, split_qkv, Heads, Rope,
};
use crate::cpu::gemm::{mm_new, mm_par, Operand};
use crate::cpu::{f32_data, with_f32};

/// Whether the fused sub-blocks implement `cfg`'s architecture.
pub(crate) fn supports(cfg: &super::GptConfig) -> bool {
    cfg.is_record4_arch()
}

/// `x + s·attention branch` (module docs) for `x` (B, T, d) and the packed `w_attn` (3d, d) and
/// `w_proj` (d, d), all fp32 on the CPU.
pub(crate) fn attention_block(
    x: &Tensor,
    w_attn: &Tensor,
    w_proj: &Tensor,
    n_head: usize,
    branch_scale: f64,
    rope: &Arc<Rope>,
) -> anyhow::Result<Tensor> {
    let op = AttnBlock {
        n_head,
        branch_scale: branch_scale as f32,
        rope: rope.clone(),
        saved: OnceLock::new(),
    };
    Ok(x.contiguous()?.apply_op3(w_attn, w_proj, op)?)
}

/// `x + MLP branch` (module docs) for `x` (B, T, d), `w_fc` (4d, d) and `w_proj` (d, 4d).
pub(crate) fn mlp_block(x: &Tensor, w_fc: &Tensor, w_proj: &Tensor) -> anyhow::Result<Tensor> {
    let op = MlpBlock {
        saved: OnceLock::new(),
    };
    Ok(x.contiguous()?.apply_op3(w_fc, w_proj, op)?)
}

/// `a·bᵀ` operands: `rows(a, k)` is a row-major (· × k) matrix, `tr(b, k)` the transpose of one.
fn rows(a: &[f32], k: usize) -> Operand<'_> {
    Operand::rows(a, k)
}
fn tr(a: &[f32], k: usize) -> Operand<'_> {
    Operand::transposed(a, k)
}

/// out = x + beta·(lhs (n × k) · rhsᵀ), rhs stored (out_features × k) as torch.nn.Linear.
fn residual_linear(
    x: &[f32],
    lhs: &[f32],
    w: &[f32],
    (n, out, k): (usize, usize, usize),
    beta: f32,
) -> Vec<f32> {
    let mut y = x.to_vec();
    mm_par((n, out, k), &mut y, out, true, beta, rows(lhs, k), tr(w, k));
    y
}

/// (dx, dW) pieces shared by both blocks: dW = gᵀ·input (out × in), d(input) = g·W (n × in).
fn linear_backward(
    g: &[f32],
    input: &[f32],
    w: &[f32],
    (n, out, inp): (usize, usize, usize),
    beta: f32,
) -> (Vec<f32>, Vec<f32>) {
    let mut dw = vec![0f32; out * inp];
    mm_par(
        (out, inp, n),
        &mut dw,
        inp,
        false,
        beta,
        tr(g, out),
        rows(input, inp),
    );
    let mut dinput = vec![0f32; n * inp];
    mm_par(
        (n, inp, out),
        &mut dinput,
        inp,
        false,
        beta,
        rows(g, out),
        rows(w, inp),
    );
    (dw, dinput)
}

fn dims3(l: &Layout) -> Result<(usize, usize, usize)> {
    l.shape().dims3()
}

/// The three gradients of a block's backward as CPU tensors.
type Grads3 = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

fn tensors([a, b, c]: [(Vec<f32>, Shape); 3]) -> Result<Grads3> {
    let t = |(v, s): (Vec<f32>, Shape)| Tensor::from_vec(v, s, &candle_core::Device::Cpu).map(Some);
    Ok((t(a)?, t(b)?, t(c)?))
}

/// What the attention block's backward reads.
struct AttnSaved {
    rstd: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention output, head-major (B, H, T, hd) for the attention backward.
    o: Vec<f32>,
    lse: Vec<f32>,
}

struct AttnBlock {
    n_head: usize,
    branch_scale: f32,
    rope: Arc<Rope>,
    saved: OnceLock<AttnSaved>,
}

impl AttnBlock {
    fn heads(&self, (b, t, d): (usize, usize, usize)) -> Result<Heads> {
        if self.n_head == 0
            || !d.is_multiple_of(self.n_head)
            || !(d / self.n_head).is_multiple_of(2)
        {
            bail!(
                "attention block: width {d} does not split into {} even heads",
                self.n_head
            );
        }
        let hd = d / self.n_head;
        if self.rope.cos.len() < t * hd / 2 {
            bail!("attention block: rotary tables shorter than T = {t}");
        }
        Ok(Heads {
            b,
            t,
            h: self.n_head,
            hd,
        })
    }

    fn q_scale(g: Heads) -> f32 {
        1.0 / (g.hd as f32).sqrt()
    }

    /// The forward: its output and what the backward needs.
    fn forward(&self, x: &[f32], wa: &[f32], wp: &[f32], g: Heads) -> (Vec<f32>, AttnSaved) {
        let (n, d) = (g.tokens(), g.width());
        let (xn, rstd) = rms_forward(x, d);
        let mut qkv = vec![0f32; n * 3 * d];
        mm_par(
            (n, 3 * d, d),
            &mut qkv,
            3 * d,
            false,
            1.0,
            rows(&xn, d),
            tr(wa, d),
        );
        drop(xn);
        let (q, k, v) = split_qkv(&qkv, g, &self.rope, Self::q_scale(g));
        drop(qkv);
        let (o, lse) = forward_all(&q, &k, &v, (g.b * g.h, g.t, g.hd));
        let merged = merge_heads(&o, g);
        let out = residual_linear(x, &merged, wp, (n, d, d), self.branch_scale);
        (
            out,
            AttnSaved {
                rstd,
                q,
                k,
                v,
                o,
                lse,
            },
        )
    }

    fn backward(
        &self,
        s: &AttnSaved,
        x: &[f32],
        wa: &[f32],
        wp: &[f32],
        gout: &[f32],
        g: Heads,
    ) -> [(Vec<f32>, Shape); 3] {
        let (n, d) = (g.tokens(), g.width());
        // out = x + s·(o·W_projᵀ): dW_proj = s·goutᵀ·o, do = s·gout·W_proj.
        let merged = merge_heads(&s.o, g);
        let (dwp, dmerged) = linear_backward(gout, &merged, wp, (n, d, d), self.branch_scale);
        drop(merged);
        let dout_h = split_heads(&dmerged, g);
        drop(dmerged);
        let (dq, dk, dv) = backward_all(
            [&s.q, &s.k, &s.v, &s.o, &dout_h],
            &s.lse,
            (g.b * g.h, g.t, g.hd),
        );
        drop(dout_h);
        let dqkv = merge_qkv_grad([&dq, &dk, &dv], g, &self.rope, Self::q_scale(g));
        drop((dq, dk, dv));
        let xn = rms_normed(x, &s.rstd, d);
        let (dwa, dxn) = linear_backward(&dqkv, &xn, wa, (n, 3 * d, d), 1.0);
        let mut dx = gout.to_vec();
        rms_backward_add(&mut dx, &dxn, &xn, &s.rstd, d);
        [
            (dx, Shape::from((g.b, g.t, d))),
            (dwa, Shape::from((3 * d, d))),
            (dwp, Shape::from((d, d))),
        ]
    }
}

impl CustomOp3 for AttnBlock {
    fn name(&self) -> &'static str {
        "attention_block"
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
        let (b, t, d) = dims3(l1)?;
        if l2.dims() != [3 * d, d] || l3.dims() != [d, d] {
            bail!(
                "attention block: weights {:?} and {:?} do not fit width {d}",
                l2.dims(),
                l3.dims()
            );
        }
        let g = self.heads((b, t, d))?;
        let x = f32_data(s1, l1, "attention block input")?;
        let wa = f32_data(s2, l2, "attention block c_attn")?;
        let wp = f32_data(s3, l3, "attention block c_proj")?;
        let (out, saved) = self.forward(x, wa, wp, g);
        // One op per forward call; a second forward through the same op keeps the first stash
        // and the backward recomputes.
        let _ = self.saved.set(saved);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        wa: &Tensor,
        wp: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<Grads3> {
        let g = self.heads(x.dims3()?)?;
        let parts = with_f32(
            &[x, wa, wp, grad],
            &["block input", "c_attn", "c_proj", "block gradient"],
            |v| {
                let recomputed;
                let saved = match self.saved.get() {
                    Some(s) if s.rstd.len() == g.tokens() => s,
                    _ => {
                        recomputed = self.forward(v[0], v[1], v[2], g).1;
                        &recomputed
                    }
                };
                Ok(self.backward(saved, v[0], v[1], v[2], v[3], g))
            },
        )?;
        tensors(parts)
    }
}

/// What the MLP block's backward reads.
struct MlpSaved {
    rstd: Vec<f32>,
    /// GELU output (the c_proj input) and GELU's slope at the c_fc output.
    a: Vec<f32>,
    slope: Vec<f32>,
}

struct MlpBlock {
    saved: OnceLock<MlpSaved>,
}

impl MlpBlock {
    fn forward(
        x: &[f32],
        wf: &[f32],
        wp: &[f32],
        (n, d, f): (usize, usize, usize),
    ) -> (Vec<f32>, MlpSaved) {
        let (xn, rstd) = rms_forward(x, d);
        let h = mm_new((n, f, d), 1.0, rows(&xn, d), tr(wf, d));
        let (a, slope) = gelu_forward(&h);
        let out = residual_linear(x, &a, wp, (n, d, f), 1.0);
        (out, MlpSaved { rstd, a, slope })
    }

    fn backward(
        s: &MlpSaved,
        x: &[f32],
        wf: &[f32],
        wp: &[f32],
        gout: &[f32],
        (n, d, f): (usize, usize, usize),
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (dwp, mut dh) = linear_backward(gout, &s.a, wp, (n, d, f), 1.0);
        dh.iter_mut().zip(&s.slope).for_each(|(g, s)| *g *= s);
        let xn = rms_normed(x, &s.rstd, d);
        let (dwf, dxn) = linear_backward(&dh, &xn, wf, (n, f, d), 1.0);
        let mut dx = gout.to_vec();
        rms_backward_add(&mut dx, &dxn, &xn, &s.rstd, d);
        (dx, dwf, dwp)
    }
}

/// (tokens, width, hidden width) of an MLP block's operands, checked.
fn mlp_dims(x: &Layout, wf: &Layout, wp: &Layout) -> Result<(usize, usize, usize, usize, usize)> {
    let (b, t, d) = dims3(x)?;
    let f = wf.dims().first().copied().unwrap_or(0);
    if wf.dims() != [f, d] || wp.dims() != [d, f] || f == 0 {
        bail!(
            "MLP block: weights {:?} and {:?} do not fit width {d}",
            wf.dims(),
            wp.dims()
        );
    }
    Ok((b, t, b * t, d, f))
}

impl CustomOp3 for MlpBlock {
    fn name(&self) -> &'static str {
        "mlp_block"
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
        let (_, _, n, d, f) = mlp_dims(l1, l2, l3)?;
        let x = f32_data(s1, l1, "MLP block input")?;
        let wf = f32_data(s2, l2, "MLP block c_fc")?;
        let wp = f32_data(s3, l3, "MLP block c_proj")?;
        let (out, saved) = Self::forward(x, wf, wp, (n, d, f));
        let _ = self.saved.set(saved);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        wf: &Tensor,
        wp: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<Grads3> {
        let (b, t, d) = x.dims3()?;
        let f = wf.dim(0)?;
        let n = b * t;
        let parts = with_f32(
            &[x, wf, wp, grad],
            &["block input", "c_fc", "c_proj", "block gradient"],
            |v| {
                let recomputed;
                let saved = match self.saved.get() {
                    Some(s) if s.rstd.len() == n => s,
                    _ => {
                        recomputed = Self::forward(v[0], v[1], v[2], (n, d, f)).1;
                        &recomputed
                    }
                };
                let (dx, dwf, dwp) = Self::backward(saved, v[0], v[1], v[2], v[3], (n, d, f));
                Ok([
                    (dx, Shape::from((b, t, d))),
                    (dwf, Shape::from((f, d))),
                    (dwp, Shape::from((d, f))),
                ])
            },
        )?;
        tensors(parts)
    }
}
