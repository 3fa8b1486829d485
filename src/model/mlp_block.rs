//! The MLP sub-block as a fused fp32 CPU op (module docs of `blocks.rs`):
//! `x + act(N(x)·W_fcᵀ + b_fc)·W_projᵀ + b_proj`, act the exact GELU (record 4) or ReLU²
//! (Track 3), N the pre-norm (weightless, or times its gains).

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::blocks::{
    dims3, flat, linear, linear_backward, pre_norm, pre_norm_backward, residual_linear, tensors,
    BlockArch, Grads3, Pieces,
};
use super::rows::{gelu_forward, relu2_forward, rms_normed, scale_rows};
use crate::cpu::{f32_data, with_f32};

/// `x + MLP branch` for `x` (B, T, d) and the flat parameters `[gains | W_fc | b_fc]` and
/// `[W_proj | b_proj]` (record 4: the two weights as they are), hidden width `f`.
pub(crate) fn mlp_block(
    x: &Tensor,
    p_in: &Tensor,
    p_out: &Tensor,
    arch: BlockArch,
    f: usize,
) -> anyhow::Result<Tensor> {
    let op = MlpBlock {
        arch,
        f,
        saved: OnceLock::new(),
    };
    Ok(x.contiguous()?.apply_op3(p_in, p_out, op)?)
}

/// What the MLP block's backward reads.
struct MlpSaved {
    rstd: Vec<f32>,
    /// The activation's output (the second Linear's input) and its slope at the first's output.
    a: Vec<f32>,
    slope: Vec<f32>,
}

struct MlpBlock {
    arch: BlockArch,
    /// Hidden width (4·d).
    f: usize,
    saved: OnceLock<MlpSaved>,
}

impl MlpBlock {
    fn forward(
        &self,
        x: &[f32],
        (p_in, p_out): (&Pieces, &Pieces),
        (n, d): (usize, usize),
    ) -> (Vec<f32>, MlpSaved) {
        let f = self.f;
        let (xn, rstd, scaled) = pre_norm(x, d, self.arch.norm_eps, p_in.gains);
        let h = linear(scaled.as_ref().unwrap_or(&xn), p_in, (n, f, d));
        drop((xn, scaled));
        let (a, slope) = if self.arch.relu2 {
            relu2_forward(&h)
        } else {
            gelu_forward(&h)
        };
        let out = residual_linear(x, &a, p_out, (n, d, f), 1.0);
        (out, MlpSaved { rstd, a, slope })
    }

    /// (dx, d(input side), d(output side)) as flat vectors.
    fn backward(
        &self,
        s: &MlpSaved,
        (x, gout): (&[f32], &[f32]),
        (p_in, p_out): (&Pieces, &Pieces),
        (n, d): (usize, usize),
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let f = self.f;
        let (dwp, dbp, mut dh) = linear_backward(gout, &s.a, p_out, (n, d, f), 1.0);
        dh.iter_mut().zip(&s.slope).for_each(|(g, s)| *g *= s);
        let xn = rms_normed(x, &s.rstd, d);
        let lin_in = p_in.gains.map(|gs| scale_rows(&xn, gs));
        let lin_in = lin_in.as_ref().unwrap_or(&xn);
        let (dwf, dbf, dlin) = linear_backward(&dh, lin_in, p_in, (n, f, d), 1.0);
        let mut dx = gout.to_vec();
        let dgains = pre_norm_backward(&mut dx, dlin, (&xn, &s.rstd, d), p_in.gains);
        (dx, flat(dgains, dwf, dbf), flat(None, dwp, dbp))
    }

    fn pieces<'a>(
        &self,
        pi: &'a [f32],
        po: &'a [f32],
        d: usize,
    ) -> Result<(Pieces<'a>, Pieces<'a>)> {
        Ok((
            self.arch.split_in(pi, d, self.f)?,
            self.arch.split_out(po, self.f, d)?,
        ))
    }
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
        let (b, t, d) = dims3(l1)?;
        if self.f == 0 {
            bail!("MLP block: hidden width 0");
        }
        let x = f32_data(s1, l1, "MLP block input")?;
        let pi = f32_data(s2, l2, "MLP block W_fc")?;
        let po = f32_data(s3, l3, "MLP block W_proj")?;
        let (pi, po) = self.pieces(pi, po, d)?;
        let (out, saved) = self.forward(x, (&pi, &po), (b * t, d));
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
        let n = b * t;
        let (sin, sout) = (p_in.shape().clone(), p_out.shape().clone());
        let parts = with_f32(
            &[x, p_in, p_out, grad],
            &["block input", "W_fc", "W_proj", "block gradient"],
            |v| {
                let (pi, po) = self.pieces(v[1], v[2], d)?;
                let recomputed;
                let saved = match self.saved.get() {
                    Some(s) if s.rstd.len() == n => s,
                    _ => {
                        recomputed = self.forward(v[0], (&pi, &po), (n, d)).1;
                        &recomputed
                    }
                };
                let (dx, din, dout) = self.backward(saved, (v[0], v[3]), (&pi, &po), (n, d));
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
