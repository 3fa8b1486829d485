//! Causal attention `softmax(q·kᵀ + causal mask)·v` over (B, H, T, head_dim), with `q` already
//! scaled by 1/√head_dim (the model folds the scale into q, `forward.rs`).
//!
//! Two paths, one entry point ([`causal_attention`]):
//! - **fused** (fp32 on the CPU): a candle `CustomOp3` with its own backward, tiled in blocks of
//!   [`BLOCK`] queries × [`BLOCK`] keys with an online softmax (FlashAttention, Dao et al. 2022,
//!   Algorithm 1; the backward is FlashAttention-2's, Dao 2023, Algorithm 2). No (T × T) buffer is
//!   ever made: the forward keeps the output and one log-sum-exp per query row (4 bytes), and the
//!   backward recomputes each block's probabilities from them. Blocks above the diagonal are
//!   skipped, so the causal half of the work is never done.
//! - **composite** (everything else, e.g. CUDA or bf16): scores, an additive mask and a softmax
//!   from candle primitives, each with candle's backward. At T = 1024 it builds and keeps
//!   (B, H, T, T) fp32 buffers per layer (scores, probabilities, and the mask's gradient,
//!   docs/candle.md §5).
//!
//! The tests check the fused path against the composite one, values and gradients, at several T
//! (dividing and not dividing [`BLOCK`]) and head sizes (`tests/attention.rs`).

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::layers::softmax_last_dim;
use crate::cpu::gemm::{mm, Operand};
use crate::cpu::{f32_data, vmath, with_f32};

/// Query and key block size. A 64 × 64 fp32 score block is 16 KB, so a block's scores, its
/// q/k/v rows (hd = 64: 16 KB each) and the output accumulator stay in L2.
pub const BLOCK: usize = 64;

/// Causal attention of (B, H, T, hd) `q` (pre-scaled), `k`, `v`; returns (B, H, T, hd) in their
/// dtype. `mask` is the (T, T) additive causal mask, used only by the composite path.
pub(crate) fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
) -> anyhow::Result<Tensor> {
    let fused = q.device().is_cpu() && [q, k, v].iter().all(|x| x.dtype() == DType::F32);
    if fused {
        return Ok(q.contiguous()?.apply_op3(
            &k.contiguous()?,
            &v.contiguous()?,
            FusedAttention::default(),
        )?);
    }
    composite(q, k, v, mask)
}

/// The primitive-op path: fp32 scores, mask and softmax (docs/candle.md §10), then `p·v` in the
/// inputs' dtype.
pub(crate) fn composite(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
) -> anyhow::Result<Tensor> {
    let scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?;
    let probs = softmax_last_dim(&scores.broadcast_add(mask)?)?;
    Ok(probs.to_dtype(v.dtype())?.matmul(v)?)
}

/// The fused op. One instance per call: it keeps its forward's log-sum-exp rows for its backward,
/// as the fused cross-entropy keeps its row statistics (`xent.rs`).
#[derive(Default)]
pub(crate) struct FusedAttention {
    lse: OnceLock<Vec<f32>>,
}

/// One head's forward: `o` (T × hd) and `lse` (T) from its q, k, v (T × hd each), block by block
/// with the running row max `m` and row sum `l` of the online softmax.
fn forward_head(q: &[f32], k: &[f32], v: &[f32], d: usize, o: &mut [f32], lse: &mut [f32]) {
    let t = lse.len();
    let mut s = vec![0f32; BLOCK * BLOCK];
    let (mut m, mut l) = ([0f32; BLOCK], [0f32; BLOCK]);
    for i0 in (0..t).step_by(BLOCK) {
        let br = BLOCK.min(t - i0);
        let ob = &mut o[i0 * d..(i0 + br) * d];
        ob.fill(0.0);
        m[..br].fill(f32::NEG_INFINITY);
        l[..br].fill(0.0);
        // Key blocks up to and including the diagonal one (j0 = i0).
        for j0 in (0..=i0).step_by(BLOCK) {
            let bc = BLOCK.min(t - j0);
            mm(
                (br, bc, d),
                &mut s,
                bc,
                false,
                1.0,
                Operand {
                    data: &q[i0 * d..],
                    rs: d,
                    cs: 1,
                },
                Operand {
                    data: &k[j0 * d..],
                    rs: 1,
                    cs: d,
                },
            );
            for r in 0..br {
                // Keys j0..=i are visible to query i = i0 + r; j0 ≤ i0 ≤ i, so at least one is.
                let valid = (i0 + r - j0 + 1).min(bc);
                let row = &mut s[r * bc..(r + 1) * bc];
                let m_new = vmath::max(&row[..valid]).max(m[r]);
                vmath::exp_shifted_in_place(&mut row[..valid], m_new);
                let sum = vmath::sum_f64(&row[..valid]) as f32;
                row[valid..].fill(0.0);
                // Rescale what the earlier blocks accumulated to the new max (exp(−∞) = 0 on
                // the first block, where nothing was accumulated).
                let alpha = (m[r] - m_new).exp();
                if alpha != 1.0 {
                    ob[r * d..(r + 1) * d].iter_mut().for_each(|x| *x *= alpha);
                }
                l[r] = l[r] * alpha + sum;
                m[r] = m_new;
            }
            mm(
                (br, d, bc),
                ob,
                d,
                true,
                1.0,
                Operand {
                    data: &s,
                    rs: bc,
                    cs: 1,
                },
                Operand {
                    data: &v[j0 * d..],
                    rs: d,
                    cs: 1,
                },
            );
        }
        for r in 0..br {
            let inv = 1.0 / l[r];
            ob[r * d..(r + 1) * d].iter_mut().for_each(|x| *x *= inv);
            lse[i0 + r] = m[r] + l[r].ln();
        }
    }
}

/// One head's inputs and forward results, as the backward reads them.
struct HeadIn<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    o: &'a [f32],
    dout: &'a [f32],
    lse: &'a [f32],
}

/// One head's backward into `dq`, `dk`, `dv` (T × hd each, zeroed by the caller): for each key
/// block j and each query block i ≥ j, P = exp(S − lse), dV_j += Pᵀ·dO_i, dS = P ∘ (dO_i·V_jᵀ − D_i)
/// with D_i = rowsum(dO_i ∘ O_i), dQ_i += dS·K_j, dK_j += dSᵀ·Q_i (FlashAttention-2, Algorithm 2).
fn backward_head(x: &HeadIn, d: usize, dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]) {
    let t = x.lse.len();
    let dsum: Vec<f32> = (0..t)
        .map(|i| {
            let (a, b) = (&x.dout[i * d..(i + 1) * d], &x.o[i * d..(i + 1) * d]);
            a.iter().zip(b).map(|(p, q)| p * q).sum()
        })
        .collect();
    let mut p = vec![0f32; BLOCK * BLOCK];
    let mut ds = vec![0f32; BLOCK * BLOCK];
    for j0 in (0..t).step_by(BLOCK) {
        let bc = BLOCK.min(t - j0);
        for i0 in (j0..t).step_by(BLOCK) {
            let br = BLOCK.min(t - i0);
            let (qi, doi) = (&x.q[i0 * d..], &x.dout[i0 * d..]);
            mm(
                (br, bc, d),
                &mut p,
                bc,
                false,
                1.0,
                Operand {
                    data: qi,
                    rs: d,
                    cs: 1,
                },
                Operand {
                    data: &x.k[j0 * d..],
                    rs: 1,
                    cs: d,
                },
            );
            for r in 0..br {
                let i = i0 + r;
                let valid = (i + 1).saturating_sub(j0).min(bc);
                let row = &mut p[r * bc..(r + 1) * bc];
                vmath::exp_shifted_in_place(&mut row[..valid], x.lse[i]);
                row[valid..].fill(0.0);
            }
            mm(
                (bc, d, br),
                &mut dv[j0 * d..],
                d,
                true,
                1.0,
                Operand {
                    data: &p,
                    rs: 1,
                    cs: bc,
                },
                Operand {
                    data: doi,
                    rs: d,
                    cs: 1,
                },
            );
            mm(
                (br, bc, d),
                &mut ds,
                bc,
                false,
                1.0,
                Operand {
                    data: doi,
                    rs: d,
                    cs: 1,
                },
                Operand {
                    data: &x.v[j0 * d..],
                    rs: 1,
                    cs: d,
                },
            );
            for r in 0..br {
                let di = dsum[i0 + r];
                let (pr, dr) = (&p[r * bc..(r + 1) * bc], &mut ds[r * bc..(r + 1) * bc]);
                dr.iter_mut()
                    .zip(pr)
                    .for_each(|(g, &pv)| *g = pv * (*g - di));
            }
            mm(
                (br, d, bc),
                &mut dq[i0 * d..],
                d,
                true,
                1.0,
                Operand {
                    data: &ds,
                    rs: bc,
                    cs: 1,
                },
                Operand {
                    data: &x.k[j0 * d..],
                    rs: d,
                    cs: 1,
                },
            );
            mm(
                (bc, d, br),
                &mut dk[j0 * d..],
                d,
                true,
                1.0,
                Operand {
                    data: &ds,
                    rs: 1,
                    cs: bc,
                },
                Operand {
                    data: qi,
                    rs: d,
                    cs: 1,
                },
            );
        }
    }
}

/// (B·H, T, hd) of a (B, H, T, hd) layout.
fn dims(l: &Layout) -> Result<(usize, usize, usize)> {
    let (b, h, t, d) = l.shape().dims4()?;
    Ok((b * h, t, d))
}

/// (out, lse) of the forward over every head, in parallel across heads.
pub(crate) fn forward_all(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (bh, t, d): (usize, usize, usize),
) -> (Vec<f32>, Vec<f32>) {
    let mut o = vec![0f32; bh * t * d];
    let mut lse = vec![0f32; bh * t];
    let n = t * d;
    o.par_chunks_mut(n)
        .zip(lse.par_chunks_mut(t))
        .enumerate()
        .for_each(|(h, (oh, lh))| {
            let r = h * n..(h + 1) * n;
            forward_head(&q[r.clone()], &k[r.clone()], &v[r], d, oh, lh)
        });
    (o, lse)
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "fused_attention"
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
        if l1.shape() != l2.shape() || l1.shape() != l3.shape() {
            bail!(
                "fused_attention: q {:?}, k {:?} and v {:?} must have one shape",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let shape = dims(l1)?;
        let (q, k, v) = (
            f32_data(s1, l1, "fused_attention: q")?,
            f32_data(s2, l2, "fused_attention: k")?,
            f32_data(s3, l3, "fused_attention: v")?,
        );
        let (o, lse) = forward_all(q, k, v, shape);
        // One instance per forward (`causal_attention`); a second forward keeps the first stash,
        // and bwd recomputes whenever the stash does not fit.
        let _ = self.lse.set(lse);
        Ok((CpuStorage::F32(o), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, h, t, d) = q.dims4()?;
        let bh = b * h;
        let (dq, dk, dv) = with_f32(
            &[q, k, v, res, grad_res],
            &["q", "k", "v", "output", "output gradient"],
            |x| {
                let recomputed;
                let lse = match self.lse.get() {
                    Some(l) if l.len() == bh * t => l,
                    _ => {
                        recomputed = forward_all(x[0], x[1], x[2], (bh, t, d)).1;
                        &recomputed
                    }
                };
                Ok(backward_all(
                    [x[0], x[1], x[2], x[3], x[4]],
                    lse,
                    (bh, t, d),
                ))
            },
        )?;
        let dev = q.device();
        let shape = (b, h, t, d);
        Ok((
            Some(Tensor::from_vec(dq, shape, dev)?),
            Some(Tensor::from_vec(dk, shape, dev)?),
            Some(Tensor::from_vec(dv, shape, dev)?),
        ))
    }
}

/// (dq, dk, dv) of every head from `[q, k, v, out, dout]` and the forward's `lse`, in parallel
/// across heads.
pub(crate) fn backward_all(
    [q, k, v, o, dout]: [&[f32]; 5],
    lse: &[f32],
    (bh, t, d): (usize, usize, usize),
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = t * d;
    let (mut dq, mut dk, mut dv) = (vec![0f32; bh * n], vec![0f32; bh * n], vec![0f32; bh * n]);
    dq.par_chunks_mut(n)
        .zip(dk.par_chunks_mut(n))
        .zip(dv.par_chunks_mut(n))
        .enumerate()
        .for_each(|(i, ((dqh, dkh), dvh))| {
            let r = i * n..(i + 1) * n;
            let x = HeadIn {
                q: &q[r.clone()],
                k: &k[r.clone()],
                v: &v[r.clone()],
                o: &o[r.clone()],
                dout: &dout[r],
                lse: &lse[i * t..(i + 1) * t],
            };
            backward_head(&x, d, dqh, dkh, dvh)
        });
    (dq, dk, dv)
}
