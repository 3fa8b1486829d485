//! In-place fp32 updates on the CPU: `dst ← α·dst + β·src` and the AdamW moment and weight
//! updates, written into `dst`'s own storage. candle's arithmetic allocates a fresh tensor per
//! operation: an AdamW step over the 124M model as `m·β₁ + g·(1 − β₁)` and so on made about a
//! dozen 0.5 GB temporaries. Elsewhere (CUDA, other dtypes, strided layouts) the same update runs
//! as candle arithmetic and the result replaces `dst`.
//!
//! In-place writes are only sound into storage nobody else reads: callers use them on tensors
//! they own alone (optimizer state, which `optim::state::load` copies on a resume; gradient
//! accumulators made by an addition; parameters, which `Var::set` already writes in place).

use anyhow::Result;
use std::cell::RefCell;

use candle_core::{CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Tensor, Var};
use rayon::prelude::*;

use super::{f32_data, f32_data_mut};

/// Elements per rayon task: large enough that the task overhead vanishes, small enough that
/// two threads share a 0.5 GB tensor evenly.
const CHUNK: usize = 1 << 16;

/// Whether `dst` and every source can be updated by the CPU kernels: fp32, contiguous, on the
/// CPU, one shape.
fn fits(dst: &Tensor, srcs: &[&Tensor]) -> bool {
    let ok = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous();
    ok(dst) && srcs.iter().all(|s| ok(s) && s.dims() == dst.dims())
}

fn operand_error(name: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "{name}: fp32 contiguous operands of one size expected"
    ))
}

/// `f(dst_chunk, src_chunks)` over matching chunks of `dst` and `srcs`, in parallel.
fn chunked<const N: usize>(
    name: &str,
    dst: &mut CpuStorage,
    dst_l: &Layout,
    srcs: [(&CpuStorage, &Layout); N],
    f: &(impl Fn(&mut [f32], [&[f32]; N]) + Sync),
) -> candle_core::Result<()> {
    let d = f32_data_mut(dst, dst_l, name)?;
    let mut ss: [&[f32]; N] = [&[]; N];
    for (i, (s, l)) in srcs.into_iter().enumerate() {
        ss[i] = f32_data(s, l, name)?;
        if ss[i].len() != d.len() {
            return Err(operand_error(name));
        }
    }
    d.par_chunks_mut(CHUNK).enumerate().for_each(|(c, dc)| {
        let at = c * CHUNK;
        f(dc, ss.map(|s| &s[at..at + dc.len()]));
    });
    Ok(())
}

/// An elementwise in-place op with one source.
struct With1<F>(&'static str, F);

impl<F: Fn(&mut [f32], [&[f32]; 1]) + Sync> InplaceOp2 for With1<F> {
    fn name(&self) -> &'static str {
        self.0
    }

    fn cpu_fwd(
        &self,
        d: &mut CpuStorage,
        dl: &Layout,
        s: &CpuStorage,
        sl: &Layout,
    ) -> candle_core::Result<()> {
        chunked(self.0, d, dl, [(s, sl)], &self.1)
    }
}

/// `dst ← α·dst + β·src` in `dst`'s storage where [`fits`], else as candle arithmetic.
fn axpby_into(dst: &Tensor, alpha: f64, src: &Tensor, beta: f64) -> Result<Option<Tensor>> {
    if !fits(dst, &[src]) {
        return Ok(Some(((dst * alpha)? + (src * beta)?)?));
    }
    let (a, b) = (alpha as f32, beta as f32);
    let op = With1("axpby", move |d: &mut [f32], [s]: [&[f32]; 1]| {
        d.iter_mut().zip(s).for_each(|(x, y)| *x = a * *x + b * y);
    });
    dst.inplace_op2(src, &op)?;
    Ok(None)
}

/// `dst ← α·dst + β·src` for a tensor the caller owns alone (module docs).
pub fn axpby(dst: &mut Tensor, alpha: f64, src: &Tensor, beta: f64) -> Result<()> {
    if let Some(t) = axpby_into(dst, alpha, src, beta)? {
        *dst = t;
    }
    Ok(())
}

/// `w ← α·w + β·src` for a parameter.
pub fn axpby_var(w: &Var, alpha: f64, src: &Tensor, beta: f64) -> Result<()> {
    if let Some(t) = axpby_into(w.as_tensor(), alpha, src, beta)? {
        w.set(&t)?;
    }
    Ok(())
}

/// `a + w·(b − a)` as PyTorch's `lerp` computes it in fp32 (ATen's Lerp.h): one fused
/// multiply-add, from `a` when |w| < 0.5 and from `b` otherwise, so that w = 1 gives `b` exactly.
pub fn lerp_f32(a: f32, b: f32, w: f32) -> f32 {
    if w.abs() < 0.5 {
        (b - a).mul_add(w, a)
    } else {
        (b - a).mul_add(w - 1.0, b)
    }
}

/// `dst ← lerp(dst, src, w)` ([`lerp_f32`]) for a tensor the caller owns alone.
pub fn lerp(dst: &mut Tensor, src: &Tensor, w: f64) -> Result<()> {
    if !fits(dst, &[src]) {
        *dst = (&*dst + ((src - &*dst)? * w)?)?;
        return Ok(());
    }
    let w = w as f32;
    let op = With1("lerp", move |d: &mut [f32], [s]: [&[f32]; 1]| {
        d.iter_mut()
            .zip(s)
            .for_each(|(x, y)| *x = lerp_f32(*x, *y, w));
    });
    dst.inplace_op2(src, &op)?;
    Ok(())
}

/// One AdamW update (docs/optimizers.md, "AdamW"): `m ← β₁·m + (1 − β₁)·g`,
/// `v ← β₂·v + (1 − β₂)·g²`, `w ← α·w − lr·(m/bc₁)/(√(v/bc₂) + eps)` with α = 1 − lr·wd.
pub struct AdamStep {
    pub b1: f64,
    pub b2: f64,
    pub alpha: f64,
    pub lr: f64,
    pub bc1: f64,
    pub bc2: f64,
    pub eps: f64,
}

/// An in-place op that hands `dst`'s fp32 data to a closure (which may itself start the next
/// in-place op, so that several tensors are open for writing at once).
struct Open<F>(&'static str, RefCell<F>);

impl<F: FnMut(&mut [f32]) -> candle_core::Result<()>> InplaceOp1 for Open<F> {
    fn name(&self) -> &'static str {
        self.0
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        (self.1.borrow_mut())(f32_data_mut(s, l, self.0)?)
    }
}

impl AdamStep {
    /// Update `w`, `m` and `v` from `g`, in the order and rounding of PyTorch's single-tensor
    /// AdamW (torch/optim/adamw.py, `_single_tensor_adamw`, fp32): `w ← w·α`;
    /// `m ← lerp(m, g, 1 − β₁)`; `v ← v·β₂ + ((1 − β₂)·g)·g`; `d = √v/√bc₂ + eps`;
    /// `w ← w + (−(lr/bc₁)·m)/d`. With Adam's per-element normalisation a last-digit difference
    /// in a near-zero gradient becomes a full-size step, so matching the order is what keeps
    /// runs next to PyTorch's (`train::tests::golden`). On fp32 CPU tensors this is one pass
    /// over the four (m and v are opened for writing by two enclosing in-place ops, w by the
    /// innermost); elsewhere it is candle arithmetic.
    pub fn apply(&self, w: &Var, m: &mut Tensor, v: &mut Tensor, g: &Tensor) -> Result<()> {
        let step_size = self.lr / self.bc1;
        let bc2_sqrt = self.bc2.sqrt();
        if !fits(w.as_tensor(), &[m, v, g]) {
            let (b1, b2) = (self.b1, self.b2);
            *m = (&*m + ((g - &*m)? * (1.0 - b1))?)?;
            *v = ((&*v * b2)? + ((g * (1.0 - b2))? * g)?)?;
            let denom = ((v.sqrt()? / bc2_sqrt)? + self.eps)?;
            let upd = ((&*m * -step_size)? / denom)?;
            return axpby_var(w, self.alpha, &upd, 1.0);
        }
        let f = |x: f64| x as f32;
        let (c1, b2, c2) = (f(1.0 - self.b1), f(self.b2), f(1.0 - self.b2));
        let (alpha, neg_step, eps, bc2s) = (f(self.alpha), f(-step_size), f(self.eps), f(bc2_sqrt));
        let update = move |ws: &mut [f32], gs: &[f32], ms: &mut [f32], vs: &mut [f32]| {
            for (((w, &g), m), v) in ws.iter_mut().zip(gs).zip(ms.iter_mut()).zip(vs.iter_mut()) {
                *m = lerp_f32(*m, g, c1);
                *v = *v * b2 + (c2 * g) * g;
                let d = v.sqrt() / bc2s + eps;
                *w = *w * alpha + (neg_step * *m) / d;
            }
        };
        m.inplace_op1(&Open(
            "adamw-m",
            RefCell::new(|ms: &mut [f32]| {
                v.inplace_op1(&Open(
                    "adamw-v",
                    RefCell::new(|vs: &mut [f32]| {
                        let op = WithMV {
                            m: RefCell::new(&mut *ms),
                            v: RefCell::new(vs),
                            f: update,
                        };
                        w.as_tensor().inplace_op2(g, &op)
                    }),
                ))
            }),
        ))?;
        Ok(())
    }
}

/// The innermost op of [`AdamStep::apply`]: `dst` is w, the source g, and m and v are the slices
/// the enclosing ops opened; `f` runs over matching chunks of the four, in parallel.
struct WithMV<'a, F> {
    m: RefCell<&'a mut [f32]>,
    v: RefCell<&'a mut [f32]>,
    f: F,
}

impl<F: Fn(&mut [f32], &[f32], &mut [f32], &mut [f32]) + Sync> InplaceOp2 for WithMV<'_, F> {
    fn name(&self) -> &'static str {
        "adamw-w"
    }

    fn cpu_fwd(
        &self,
        d: &mut CpuStorage,
        dl: &Layout,
        s: &CpuStorage,
        sl: &Layout,
    ) -> candle_core::Result<()> {
        let (ws, gs) = (f32_data_mut(d, dl, "adamw-w")?, f32_data(s, sl, "adamw-g")?);
        let (mut m, mut v, f) = (self.m.borrow_mut(), self.v.borrow_mut(), &self.f);
        if [gs.len(), m.len(), v.len()].iter().any(|&n| n != ws.len()) {
            return Err(operand_error("adamw"));
        }
        ws.par_chunks_mut(CHUNK)
            .zip(gs.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((w, g), m), v)| f(w, g, m, v));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn close(a: &Tensor, b: &Tensor) -> f64 {
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        d.to_scalar::<f32>().unwrap() as f64
    }

    fn randn(shape: (usize, usize)) -> Tensor {
        Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()
    }

    const STEP: AdamStep = AdamStep {
        b1: 0.9,
        b2: 0.95,
        alpha: 0.99,
        lr: 0.1,
        bc1: 0.1,
        bc2: 0.05,
        eps: 1e-8,
    };

    /// One AdamW update and `axpby` against the candle arithmetic they replace: in place for
    /// sizes above and below one parallel chunk, and through the fallback for strided state.
    #[test]
    fn inplace_updates_match_candle_arithmetic() -> Result<()> {
        for (shape, strided) in [((1, 5), false), ((CHUNK / 8 + 3, 8), false), ((4, 6), true)] {
            let g = randn(shape);
            let w = Var::from_tensor(&randn(shape))?;
            let (w0, m0) = (w.as_tensor().copy()?, randn(shape));
            let v0 = randn(shape).abs()?;
            let (mut m, mut v) = if strided {
                // Same values, column-major storage: not contiguous, so the fallback runs.
                let tr = |x: &Tensor| x.t()?.contiguous()?.t();
                (tr(&m0)?, tr(&v0)?)
            } else {
                (m0.copy()?, v0.copy()?)
            };
            STEP.apply(&w, &mut m, &mut v, &g)?;
            let want_m = ((&m0 * 0.9)? + (&g * 0.1)?)?;
            let want_v = ((&v0 * 0.95)? + (g.sqr()? * 0.05)?)?;
            assert!(close(&m, &want_m) < 1e-6, "{shape:?} m");
            assert!(close(&v, &want_v) < 1e-6, "{shape:?} v");
            let upd = ((&want_m / 0.1)? / ((&want_v / 0.05)?.sqrt()? + 1e-8)?)?;
            let want_w = ((&w0 * 0.99)? - (upd * 0.1)?)?;
            assert!(close(w.as_tensor(), &want_w) < 1e-5, "{shape:?} w");
            let mut acc = g.copy()?;
            axpby(&mut acc, 1.0, &g, 2.0)?;
            assert!(close(&acc, &(&g * 3.0)?) < 1e-6);
        }
        let mut strided = randn((3, 4)).t()?;
        let src = Tensor::ones((4, 3), DType::F32, &Device::Cpu)?;
        let want = (&strided + &src)?;
        axpby(&mut strided, 1.0, &src, 1.0)?;
        assert!(close(&strided, &want) < 1e-7);
        Ok(())
    }
}
