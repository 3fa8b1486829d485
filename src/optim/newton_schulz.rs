//! Quintic Newton–Schulz orthogonalisation (Jordan et al. 2024, the Muon blog; modded-nanogpt
//! record 4's `zeropower_via_newtonschulz5`): approximates msgn(U) = P·Qᵀ for U = P·S·Qᵀ.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};

use super::ns_cpu::NewtonSchulzCpu;

/// Record-4 coefficients, chosen to maximise the slope at 0; the iteration then maps singular
/// values into roughly [0.7, 1.2] instead of exactly 1 (Jordan et al. 2024), which the record
/// found harmless.
pub const NS_COEFFS: (f64, f64, f64) = (3.4445, -4.7750, 2.0315);
/// Added to ‖U‖_F before dividing so a zero update stays zero instead of NaN.
pub const NS_EPS: f64 = 1e-7;

/// `steps` quintic Newton–Schulz iterations on `u`, a matrix (rows, cols) or a batch
/// (batch, rows, cols) of same-shape matrices, each normalised by its own Frobenius norm. The
/// iteration runs in `dtype` (bf16 on GPU, f32 on CPU); the result is returned in f32.
pub fn newton_schulz(u: &Tensor, steps: usize, dtype: DType) -> Result<Tensor> {
    let batched = match u.rank() {
        2 => false,
        3 => true,
        r => bail!("newton_schulz: expected a 2-D or 3-D tensor, got rank {r}"),
    };
    let u = if batched { u.clone() } else { u.unsqueeze(0)? };
    let (_, rows, cols) = u.dims3()?;
    // Normalise in f32 (a bf16 norm loses ~3 digits) so the top singular value is ≤ 1.
    let u = u.to_dtype(DType::F32)?;
    let norm = u
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sum_keepdim(D::Minus2)?
        .sqrt()?;
    let mut x = u.broadcast_div(&(norm + NS_EPS)?)?;
    // Work on the wide orientation so X·Xᵀ is the smaller Gram matrix.
    let tall = rows > cols;
    if tall {
        x = x.transpose(1, 2)?;
    }
    let x = x.contiguous()?.to_dtype(dtype)?;
    // fp32 on the CPU: the GEMM kernel with symmetric products and the Gram form (ns_cpu.rs).
    let x = if x.device().is_cpu() && dtype == DType::F32 {
        x.apply_op1_no_bwd(&NewtonSchulzCpu { steps })?
    } else {
        plain_iterations(x, steps)?
    };
    let mut x = x.to_dtype(DType::F32)?;
    if tall {
        x = x.transpose(1, 2)?.contiguous()?;
    }
    Ok(if batched { x } else { x.squeeze(0)? })
}

/// The record's iteration on a wide batch `x` (B, m, n), m ≤ n: A = X·Xᵀ, X ← a·X + (b·A + c·A²)·X.
/// Three GEMMs a step: 2·m²·n + m³ multiply-adds.
pub(crate) fn plain_iterations(mut x: Tensor, steps: usize) -> Result<Tensor> {
    let (a, b, c) = NS_COEFFS;
    for _ in 0..steps {
        let gram = x.matmul(&x.t()?)?;
        let poly = ((&gram * b)? + (gram.matmul(&gram)? * c)?)?;
        x = ((&x * a)? + poly.matmul(&x)?)?;
    }
    Ok(x)
}
