//! Singular values of weight-shaped matrices and the norms built from them, for the run's
//! diagnostics (docs/diagnostics.md). The eigensolver and SVD are faer's; this file only forms
//! the input and reads the result.
//!
//! Two ways to the singular values of an m × n matrix A (k = min(m, n)):
//! - [`SvMethod::Gram`] (what the trainer uses): the k × k Gram matrix A·Aᵀ or Aᵀ·A, formed on
//!   A's device in f64, then its eigenvalues on the host; σᵢ = √max(λᵢ, 0). An eigenvalue carries
//!   an absolute error of about ε·σ₁² (ε = 2.2e-16), so σᵢ is exact to about ε·σ₁²/σᵢ, and the
//!   smallest ones come out as ~√ε·σ₁ ≈ 1.5e-8·σ₁ instead of 0: far below anything the
//!   diagnostics report.
//! - [`SvMethod::Svd`]: faer's bidiagonal SVD of A itself in f64, singular values only. Accurate
//!   to ε·σ₁ for every σᵢ, and slower (`speedrun bench diag` times both; docs/perf.md).

use anyhow::{anyhow, Result};
use candle_core::{DType, Tensor};
use faer::{MatRef, Side};
use rayon::prelude::*;

/// How singular values are computed (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvMethod {
    Gram,
    Svd,
}

/// The singular values of every matrix in `mats` (2-D, any dtype, any device), each in
/// descending order; all NaN for a matrix with a non-finite entry (a diverging step). The device
/// work runs one matrix at a time; the host eigensolves and SVDs run in parallel over the
/// matrices.
pub fn singular_values(mats: &[&Tensor], method: SvMethod) -> Result<Vec<Vec<f64>>> {
    // (rows, cols, row-major f64) per matrix: the Gram matrix for Gram, the matrix for Svd.
    let hosts = mats
        .iter()
        .map(|a| {
            let (r, c) = a.dims2()?;
            let a = a.to_dtype(DType::F64)?;
            let (m, r, c) = match method {
                SvMethod::Gram if r <= c => (a.matmul(&a.t()?)?, r, r),
                SvMethod::Gram => (a.t()?.matmul(&a)?, c, c),
                SvMethod::Svd => (a, r, c),
            };
            Ok((r, c, m.flatten_all()?.to_vec1::<f64>()?))
        })
        .collect::<Result<Vec<_>>>()?;
    hosts
        .par_iter()
        .map(|(r, c, a)| match method {
            _ if a.iter().any(|x| !x.is_finite()) => Ok(vec![f64::NAN; *r.min(c)]),
            SvMethod::Gram => Ok(symmetric_eigenvalues(a, *r)?
                .into_iter()
                .rev()
                .map(|l| l.max(0.0).sqrt())
                .collect()),
            SvMethod::Svd => MatRef::from_row_major_slice(a.as_slice(), *r, *c)
                .singular_values()
                .map_err(|e| anyhow!("SVD of a {r}x{c} matrix: {e:?}")),
        })
        .collect()
}

/// The eigenvalues of the symmetric `n × n` row-major matrix `a`, ascending (faer's self-adjoint
/// eigensolver; only the lower triangle is read).
pub fn symmetric_eigenvalues(a: &[f64], n: usize) -> Result<Vec<f64>> {
    MatRef::from_row_major_slice(a, n, n)
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| anyhow!("eigenvalues of a {n}x{n} symmetric matrix: {e:?}"))
}

/// Norms of a matrix from its singular values σ (descending).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Norms {
    /// ‖A‖_F = √Σσᵢ².
    pub fro: f64,
    /// ‖A‖_* = Σσᵢ.
    pub nuc: f64,
    /// ‖A‖₂ = σ₁.
    pub spec: f64,
    /// ‖A‖²_F / ‖A‖²₂, between 1 and rank(A); 0 for the zero matrix.
    pub stable_rank: f64,
    /// ‖A‖²_* / ‖A‖²_F, between 1 and rank(A) (arXiv 2505.23737, the ratio of its Figure 4);
    /// 0 for the zero matrix.
    pub nuc_fro_ratio: f64,
}

impl Norms {
    pub fn of(sigma: &[f64]) -> Norms {
        let fro2: f64 = sigma.iter().map(|s| s * s).sum();
        let nuc: f64 = sigma.iter().sum();
        let spec = sigma.first().copied().unwrap_or(0.0);
        let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { 0.0 };
        Norms {
            fro: fro2.sqrt(),
            nuc,
            spec,
            stable_rank: ratio(fro2, spec * spec),
            nuc_fro_ratio: ratio(nuc * nuc, fro2),
        }
    }
}
