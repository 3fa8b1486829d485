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
use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Tensor, Var};
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

/// An elementwise in-place op with two sources.
struct With2<F>(&'static str, F);

impl<F: Fn(&mut [f32], [&[f32]; 2]) + Sync> InplaceOp3 for With2<F> {
    fn name(&self) -> &'static str {
        self.0
    }

    fn cpu_fwd(
        &self,
        d: &mut CpuStorage,
        dl: &Layout,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        chunked(self.0, d, dl, [(s1, l1), (s2, l2)], &self.1)
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

/// The AdamW moments, `m ← β₁·m + (1 − β₁)·g` and `v ← β₂·v + (1 − β₂)·g²`
/// (docs/optimizers.md, "AdamW").
pub fn adam_moments(m: &mut Tensor, v: &mut Tensor, g: &Tensor, b1: f64, b2: f64) -> Result<()> {
    axpby(m, b1, g, 1.0 - b1)?;
    if !fits(v, &[g]) {
        *v = ((&*v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
        return Ok(());
    }
    let (b, c) = (b2 as f32, (1.0 - b2) as f32);
    let op = With1("adam-v", move |d: &mut [f32], [g]: [&[f32]; 1]| {
        d.iter_mut()
            .zip(g)
            .for_each(|(v, g)| *v = b * *v + c * (g * g));
    });
    v.inplace_op2(g, &op)?;
    Ok(())
}

/// The AdamW weight update `w ← α·w − lr·(m/bc₁)/(√(v/bc₂) + eps)`, α = 1 − lr·wd.
pub struct AdamApply {
    pub alpha: f64,
    pub lr: f64,
    pub bc1: f64,
    pub bc2: f64,
    pub eps: f64,
}

impl AdamApply {
    pub fn apply(&self, w: &Var, m: &Tensor, v: &Tensor) -> Result<()> {
        if !fits(w.as_tensor(), &[m, v]) {
            let denom = ((v / self.bc2)?.sqrt()? + self.eps)?;
            let upd = ((m / self.bc1)? / denom)?;
            return axpby_var(w, self.alpha, &upd, -self.lr);
        }
        // candle divides a tensor by a scalar as a product with its reciprocal; so does this.
        let (alpha, lr, eps) = (self.alpha as f32, self.lr as f32, self.eps as f32);
        let (r1, r2) = ((1.0 / self.bc1) as f32, (1.0 / self.bc2) as f32);
        let op = With2("adam-apply", move |w: &mut [f32], [m, v]: [&[f32]; 2]| {
            for ((w, m), v) in w.iter_mut().zip(m).zip(v) {
                *w = alpha * *w - lr * ((m * r1) / ((v * r2).sqrt() + eps));
            }
        });
        w.as_tensor().inplace_op3(m, v, &op)?;
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

    /// Each in-place update equals the candle arithmetic it replaces (the fallback path), for
    /// sizes above and below one parallel chunk; a strided destination takes the fallback.
    #[test]
    fn inplace_updates_match_candle_arithmetic() -> Result<()> {
        for n in [5, CHUNK + 3] {
            let g = Tensor::randn(0f32, 1.0, n, &Device::Cpu)?;
            let mut m = Tensor::randn(0f32, 1.0, n, &Device::Cpu)?;
            let mut v = Tensor::randn(0f32, 1.0, n, &Device::Cpu)?.abs()?;
            let (m0, v0) = (m.copy()?, v.copy()?);
            adam_moments(&mut m, &mut v, &g, 0.9, 0.95)?;
            assert!(close(&m, &((&m0 * 0.9)? + (&g * 0.1)?)?) < 1e-6);
            assert!(close(&v, &((&v0 * 0.95)? + (g.sqr()? * 0.05)?)?) < 1e-6);
            let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, n, &Device::Cpu)?)?;
            let w0 = w.as_tensor().copy()?;
            let step = AdamApply {
                alpha: 0.99,
                lr: 0.1,
                bc1: 0.1,
                bc2: 0.05,
                eps: 1e-8,
            };
            step.apply(&w, &m, &v)?;
            let upd = ((&m / 0.1)? / ((&v / 0.05)?.sqrt()? + 1e-8)?)?;
            assert!(close(w.as_tensor(), &((&w0 * 0.99)? - (upd * 0.1)?)?) < 1e-5);
            let mut acc = g.copy()?;
            axpby(&mut acc, 1.0, &g, 2.0)?;
            assert!(close(&acc, &(&g * 3.0)?) < 1e-6);
        }
        let mut strided = Tensor::randn(0f32, 1.0, (3, 4), &Device::Cpu)?.t()?;
        let src = Tensor::ones((4, 3), DType::F32, &Device::Cpu)?;
        let want = (&strided + &src)?;
        axpby(&mut strided, 1.0, &src, 1.0)?;
        assert!(close(&strided, &want) < 1e-7);
        Ok(())
    }
}
