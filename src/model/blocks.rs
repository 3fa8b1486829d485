//! The two residual sub-blocks of a block as fused fp32 CPU ops, each a candle `CustomOp3` with
//! its own backward, for every architecture of the model ([`BlockArch`]):
//!
//! - attention: `x + s·(Attn(rope(qk-norm(N(x)·W_qkvᵀ + b_qkv)))·W_oᵀ + b_o)` with N the
//!   pre-norm (weightless, or times its gains), the per-head q/k norm only where the model has
//!   one, s = 1/√(2·n_layer) for record 4 and 1 for Track 3 (this file);
//! - MLP: `x + act(N(x)·W_fcᵀ + b_fc)·W_projᵀ + b_proj`, act GELU or ReLU² (`mlp_block.rs`).
//!
//! Why: built from candle primitives, each sub-block is a few dozen graph nodes, and candle's
//! backward gives every node's input a zero-filled gradient buffer before adding into it (it has
//! no in-place accumulation), copies tensors for each transpose and split, and runs each
//! elementwise op as its own pass over memory. Here a sub-block is one node: the forward makes
//! the GEMMs' operands once and keeps what the backward needs (the 1/rms rows, the normed q and
//! k heads, the rotated q and k, v, the attention output and its log-sum-exp rows, the
//! activation and its slope), and the backward writes each gradient once. The attention itself
//! is the tiled kernel of `attention.rs`.
//!
//! A sub-block's parameters reach the op as two flat tensors, the input side
//! `[gains | W_in | b_in]` and the output side `[W_out | b_out]` (absent pieces left out;
//! Track 3's q, k, v weights concatenated in that order), so that candle's graph carries their
//! gradients back to each parameter; record 4's are its two weight tensors as they are. The
//! math is `forward.rs`'s, which stays the path everywhere else (CUDA, bf16, and the steps where
//! Newton-Muon records layer inputs); `tests/blocks.rs` checks the two paths against each other,
//! values and the gradients of x and every parameter, for both architectures.

use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::attention::{backward_all, forward_all};
use super::rows::{
    merge_heads, merge_qkv_grad, qk_norm_backward, qk_norm_rows, rms_backward_add, rms_forward,
    rms_normed, scale_rows, scale_rows_backward, split_heads, split_qkv, Heads, QkNormed, Rope,
};
use super::GptConfig;
use crate::cpu::gemm::{mm_new, mm_par, Operand};
use crate::cpu::{f32_data, with_f32};

/// What separates the fused sub-blocks of one architecture.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockArch {
    pub n_head: usize,
    pub head_dim: usize,
    pub norm_eps: f32,
    /// The pre-norms have gains.
    pub gains: bool,
    /// Every Linear has a bias.
    pub bias: bool,
    /// q and k are normed per head before rotary.
    pub qk_norm: bool,
    /// The softmax scale, folded into q.
    pub softmax_scale: f32,
    /// The attention branch's scale before the residual add.
    pub branch_scale: f32,
    /// ReLU² rather than GELU in the MLP.
    pub relu2: bool,
}

impl BlockArch {
    pub fn of(c: &GptConfig) -> Self {
        BlockArch {
            n_head: c.n_head,
            head_dim: c.head_dim(),
            norm_eps: c.norm_eps as f32,
            gains: c.norm_gains,
            bias: c.bias,
            qk_norm: c.qk_norm,
            softmax_scale: c.softmax_scale() as f32,
            branch_scale: if c.scale_attn_branch {
                (1.0 / (2.0 * c.n_layer as f64).sqrt()) as f32
            } else {
                1.0
            },
            relu2: c.mlp == super::arch::Activation::Relu2,
        }
    }

    /// The `[gains | W | b]` pieces of a flat input-side parameter vector of width `d` and
    /// `out` outputs, checked against its length.
    pub fn split_in<'a>(&self, p: &'a [f32], d: usize, out: usize) -> Result<Pieces<'a>> {
        let g = if self.gains { d } else { 0 };
        let b = if self.bias { out } else { 0 };
        if p.len() != g + out * d + b {
            bail!(
                "fused block: {} input-side parameters, expected {} (width {d}, {out} outputs)",
                p.len(),
                g + out * d + b
            );
        }
        Ok(Pieces {
            gains: (g > 0).then(|| &p[..g]),
            w: &p[g..g + out * d],
            b: (b > 0).then(|| &p[g + out * d..]),
        })
    }

    /// The `[W | b]` pieces of a flat output-side parameter vector (`out` × `inp`).
    pub fn split_out<'a>(&self, p: &'a [f32], inp: usize, out: usize) -> Result<Pieces<'a>> {
        let b = if self.bias { out } else { 0 };
        if p.len() != out * inp + b {
            bail!(
                "fused block: {} output-side parameters, expected {}",
                p.len(),
                out * inp + b
            );
        }
        Ok(Pieces {
            gains: None,
            w: &p[..out * inp],
            b: (b > 0).then(|| &p[out * inp..]),
        })
    }
}

/// One side's parameters as slices of its flat vector.
pub(crate) struct Pieces<'a> {
    pub gains: Option<&'a [f32]>,
    pub w: &'a [f32],
    pub b: Option<&'a [f32]>,
}

/// Whether the fused sub-blocks implement `cfg`'s architecture (every architecture the model
/// has: the head width must pair for rotary, which `GptConfig::validate` already requires).
pub(crate) fn supports(cfg: &GptConfig) -> bool {
    cfg.head_dim() * cfg.n_head == cfg.n_embd
}

/// `x + attention branch` (module docs) for `x` (B, T, d), the flat input-side parameters
/// `p_in` and output-side `p_out`, all fp32 on the CPU.
pub(crate) fn attention_block(
    x: &Tensor,
    p_in: &Tensor,
    p_out: &Tensor,
    arch: BlockArch,
    rope: &Arc<Rope>,
) -> anyhow::Result<Tensor> {
    let op = AttnBlock {
        arch,
        rope: rope.clone(),
        saved: OnceLock::new(),
    };
    Ok(x.contiguous()?.apply_op3(p_in, p_out, op)?)
}

/// `a·bᵀ` operands: `rows(a, k)` is a row-major (· × k) matrix, `tr(b, k)` the transpose of one.
pub(super) fn rows(a: &[f32], k: usize) -> Operand<'_> {
    Operand::rows(a, k)
}
pub(super) fn tr(a: &[f32], k: usize) -> Operand<'_> {
    Operand::transposed(a, k)
}

/// out = x + beta·(lhs (n × k) · Wᵀ + b), W stored (out_features × k) as torch.nn.Linear.
pub(super) fn residual_linear(
    x: &[f32],
    lhs: &[f32],
    w: &Pieces,
    (n, out, k): (usize, usize, usize),
    beta: f32,
) -> Vec<f32> {
    let mut y = x.to_vec();
    mm_par(
        (n, out, k),
        &mut y,
        out,
        true,
        beta,
        rows(lhs, k),
        tr(w.w, k),
    );
    if let Some(b) = w.b {
        add_bias(&mut y, b, beta);
    }
    y
}

/// `y[i][j] += beta·b[j]` for every row i.
pub(super) fn add_bias(y: &mut [f32], b: &[f32], beta: f32) {
    use rayon::prelude::*;
    y.par_chunks_mut(b.len())
        .for_each(|r| r.iter_mut().zip(b).for_each(|(y, b)| *y += beta * b));
}

/// `lhs · Wᵀ (+ b)` into a new (n × out) buffer.
pub(super) fn linear(lhs: &[f32], w: &Pieces, (n, out, k): (usize, usize, usize)) -> Vec<f32> {
    let mut y = mm_new((n, out, k), 1.0, rows(lhs, k), tr(w.w, k));
    if let Some(b) = w.b {
        add_bias(&mut y, b, 1.0);
    }
    y
}

/// The gradients of a Linear `y = beta·(input·Wᵀ + b)` given dL/dy = `g`: (dW, db when it has a
/// bias, d(input)) with dW = beta·gᵀ·input (out × in), db = beta·Σ rows of g, d(input) =
/// beta·g·W (n × in).
pub(super) fn linear_backward(
    g: &[f32],
    input: &[f32],
    w: &Pieces,
    (n, out, inp): (usize, usize, usize),
    beta: f32,
) -> (Vec<f32>, Option<Vec<f32>>, Vec<f32>) {
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
    let db = w.b.map(|_| column_sums(g, out, beta));
    let mut dinput = vec![0f32; n * inp];
    mm_par(
        (n, inp, out),
        &mut dinput,
        inp,
        false,
        beta,
        rows(g, out),
        rows(w.w, inp),
    );
    (dw, db, dinput)
}

/// beta·Σ_i m[i][j] over the rows of row-major `m` with `cols` columns (f64 sums).
fn column_sums(m: &[f32], cols: usize, beta: f32) -> Vec<f32> {
    use rayon::prelude::*;
    (0..cols)
        .into_par_iter()
        .map(|j| beta * m.chunks(cols).map(|r| r[j] as f64).sum::<f64>() as f32)
        .collect()
}

/// One side's gradient as a flat vector in its parameters' layout `[gains | W | b]`.
pub(super) fn flat(gains: Option<Vec<f32>>, w: Vec<f32>, b: Option<Vec<f32>>) -> Vec<f32> {
    let mut out = gains.unwrap_or_default();
    out.extend(w);
    out.extend(b.unwrap_or_default());
    out
}

pub(super) fn dims3(l: &Layout) -> Result<(usize, usize, usize)> {
    l.shape().dims3()
}

/// The three gradients of a block's backward as CPU tensors.
pub(super) type Grads3 = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

pub(super) fn tensors([a, b, c]: [(Vec<f32>, Shape); 3]) -> Result<Grads3> {
    let t = |(v, s): (Vec<f32>, Shape)| Tensor::from_vec(v, s, &candle_core::Device::Cpu).map(Some);
    Ok((t(a)?, t(b)?, t(c)?))
}

/// The pre-norm of a sub-block: the normed rows, their 1/rms, and the rows times the gains
/// (the Linear's input) when the model has them.
pub(super) fn pre_norm(
    x: &[f32],
    d: usize,
    eps: f32,
    gains: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let (xn, rstd) = rms_forward(x, d, eps);
    let scaled = gains.map(|g| scale_rows(&xn, g));
    (xn, rstd, scaled)
}

/// The backward of [`pre_norm`] added into `dx`: from d(Linear input) `dlin`, through the
/// gains (whose gradient it returns) and the norm, given the normed rows `xn`.
pub(super) fn pre_norm_backward(
    dx: &mut [f32],
    mut dlin: Vec<f32>,
    (xn, rstd, d): (&[f32], &[f32], usize),
    gains: Option<&[f32]>,
) -> Option<Vec<f32>> {
    let dg = gains.map(|g| scale_rows_backward(&mut dlin, xn, g));
    rms_backward_add(dx, &dlin, xn, rstd, d);
    dg
}

/// What the attention block's backward reads.
struct AttnSaved {
    rstd: Vec<f32>,
    qk: Option<QkNormed>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention output, head-major (B, H, T, hd) for the attention backward.
    o: Vec<f32>,
    lse: Vec<f32>,
}

struct AttnBlock {
    arch: BlockArch,
    rope: Arc<Rope>,
    saved: OnceLock<AttnSaved>,
}

impl AttnBlock {
    fn heads(&self, (b, t, d): (usize, usize, usize)) -> Result<Heads> {
        let a = self.arch;
        if a.n_head == 0 || a.n_head * a.head_dim != d || !a.head_dim.is_multiple_of(2) {
            bail!(
                "attention block: width {d} does not split into {} even heads of {}",
                a.n_head,
                a.head_dim
            );
        }
        if self.rope.cos.len() < t * a.head_dim / 2 {
            bail!("attention block: rotary tables shorter than T = {t}");
        }
        Ok(Heads {
            b,
            t,
            h: a.n_head,
            hd: a.head_dim,
        })
    }

    /// The forward: its output and what the backward needs.
    fn forward(&self, x: &[f32], p_in: &Pieces, p_out: &Pieces, g: Heads) -> (Vec<f32>, AttnSaved) {
        let (n, d, a) = (g.tokens(), g.width(), self.arch);
        let (xn, rstd, scaled) = pre_norm(x, d, a.norm_eps, p_in.gains);
        let mut qkv = linear(scaled.as_ref().unwrap_or(&xn), p_in, (n, 3 * d, d));
        drop((xn, scaled));
        let qk = a.qk_norm.then(|| qk_norm_rows(&mut qkv, g, a.norm_eps));
        let (q, k, v) = split_qkv(&qkv, g, &self.rope, a.softmax_scale);
        drop(qkv);
        let (o, lse) = forward_all(&q, &k, &v, (g.b * g.h, g.t, g.hd));
        let merged = merge_heads(&o, g);
        let out = residual_linear(x, &merged, p_out, (n, d, d), a.branch_scale);
        let saved = AttnSaved {
            rstd,
            qk,
            q,
            k,
            v,
            o,
            lse,
        };
        (out, saved)
    }

    /// (dx, d(input side), d(output side)) as flat vectors.
    fn backward(
        &self,
        s: &AttnSaved,
        (x, gout): (&[f32], &[f32]),
        p_in: &Pieces,
        p_out: &Pieces,
        g: Heads,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (n, d, a) = (g.tokens(), g.width(), self.arch);
        // out = x + s·(o·W_oᵀ + b_o): dW_o = s·goutᵀ·o, db_o = s·Σ gout, do = s·gout·W_o.
        let merged = merge_heads(&s.o, g);
        let (dwo, dbo, dmerged) = linear_backward(gout, &merged, p_out, (n, d, d), a.branch_scale);
        drop(merged);
        let dout_h = split_heads(&dmerged, g);
        drop(dmerged);
        let (dq, dk, dv) = backward_all(
            [&s.q, &s.k, &s.v, &s.o, &dout_h],
            &s.lse,
            (g.b * g.h, g.t, g.hd),
        );
        drop(dout_h);
        let mut dqkv = merge_qkv_grad([&dq, &dk, &dv], g, &self.rope, a.softmax_scale);
        drop((dq, dk, dv));
        if let Some(qk) = &s.qk {
            qk_norm_backward(&mut dqkv, qk, g);
        }
        let xn = rms_normed(x, &s.rstd, d);
        let lin_in = p_in.gains.map(|gs| scale_rows(&xn, gs));
        let lin_in = lin_in.as_ref().unwrap_or(&xn);
        let (dwa, dba, dlin) = linear_backward(&dqkv, lin_in, p_in, (n, 3 * d, d), 1.0);
        let mut dx = gout.to_vec();
        let dgains = pre_norm_backward(&mut dx, dlin, (&xn, &s.rstd, d), p_in.gains);
        (dx, flat(dgains, dwa, dba), flat(None, dwo, dbo))
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
        let g = self.heads((b, t, d))?;
        let x = f32_data(s1, l1, "attention block input")?;
        let p_in = self
            .arch
            .split_in(f32_data(s2, l2, "attention block W_qkv")?, d, 3 * d)?;
        let p_out = self
            .arch
            .split_out(f32_data(s3, l3, "attention block W_o")?, d, d)?;
        let (out, saved) = self.forward(x, &p_in, &p_out, g);
        // One op per forward call; a second forward through the same op keeps the first stash
        // and the backward recomputes.
        let _ = self.saved.set(saved);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        p_in: &Tensor,
        p_out: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<Grads3> {
        let (b, t, d) = x.dims3()?;
        let g = self.heads((b, t, d))?;
        let (sin, sout) = (p_in.shape().clone(), p_out.shape().clone());
        let parts = with_f32(
            &[x, p_in, p_out, grad],
            &["block input", "W_qkv", "W_o", "block gradient"],
            |v| {
                let pi = self.arch.split_in(v[1], d, 3 * d)?;
                let po = self.arch.split_out(v[2], d, d)?;
                let recomputed;
                let saved = match self.saved.get() {
                    Some(s) if s.rstd.len() == g.tokens() => s,
                    _ => {
                        recomputed = self.forward(v[0], &pi, &po, g).1;
                        &recomputed
                    }
                };
                let (dx, din, dout) = self.backward(saved, (v[0], v[3]), &pi, &po, g);
                Ok([
                    (dx, Shape::from((b, t, d))),
                    (din, sin.clone()),
                    (dout, sout.clone()),
                ])
            },
        )?;
        tensors(parts)
    }
}
