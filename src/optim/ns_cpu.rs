//! Quintic Newton–Schulz in fp32 on the CPU, straight on GEMMs over slices, with two savings that
//! candle's batched matmul cannot make (docs/optimizers.md, "Newton–Schulz on the CPU"):
//!
//! - **Symmetric products.** X·Xᵀ and the powers of a Gram matrix are symmetric, so only the
//!   blocks on and below the diagonal are multiplied ([`mm_symmetric`]).
//! - **The Gram form for wide matrices.** Every iterate is X_k = Q_k·X₀ with Q_k a polynomial in
//!   G = X₀·X₀ᵀ: true for k = 0, and X_{k+1} = p(S_k)·X_k with S_k = X_k·X_kᵀ = Q_k·G·Q_k keeps it
//!   so. Polynomials in G commute, hence with P_k = a·I + b·S_k + c·S_k²:
//!   Q_{k+1} = P_k·Q_k and S_{k+1} = P_k·(P_k·S_k), all m × m and all symmetric, and the result
//!   is Q_5·X₀. For a wide m × n matrix that is 2·m²·n + 17·m³ multiply-adds (fewer with the
//!   symmetric blocks) against the record's 5·(2·m²·n + m³): for the 768 × 3072 MLP matrices,
//!   25 against 45 units of 768³ before the symmetric saving. For square matrices the record's
//!   form is cheaper and is kept. The two agree in exact arithmetic and to fp32 rounding here
//!   (tests in `src/optim/tests/ns.rs`).
//!
//! Matrices are independent, so a batch runs one matrix per rayon task and each GEMM is
//! single-threaded.

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape};
use rayon::prelude::*;

use crate::cpu::gemm::{mm, mm_symmetric, Operand};

/// The op: `steps` iterations on a contiguous fp32 batch (B, m, n) with m ≤ n, each matrix
/// already normalised; returns the batch of results.
pub(crate) struct NewtonSchulzCpu {
    pub steps: usize,
    /// (a, b, c) of X ← a·X + (b·A + c·A²)·X.
    pub coeffs: (f32, f32, f32),
}

impl CustomOp1 for NewtonSchulzCpu {
    fn name(&self) -> &'static str {
        "newton-schulz-cpu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(all) = storage else {
            bail!("newton-schulz-cpu: fp32 input expected")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("newton-schulz-cpu: contiguous input expected")
        };
        let (_, m, n) = layout.shape().dims3()?;
        if m > n {
            bail!("newton-schulz-cpu: wide matrices expected, got {m} × {n}");
        }
        let x = &all[start..end];
        let mut out = vec![0f32; x.len()];
        if m * n > 0 {
            out.par_chunks_mut(m * n)
                .zip(x.par_chunks(m * n))
                .for_each(|(o, x0)| iterate(x0, o, (m, n), self.steps, self.coeffs));
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Whether the Gram form is the cheaper one for a wide m × n matrix: 2·n/m + 17 against
/// 5·(2·n/m + 1) units of m³ (symmetric savings aside), i.e. n > 1.5·m.
pub(crate) fn gram_is_cheaper(m: usize, n: usize) -> bool {
    2 * n > 3 * m
}

/// The most steps the Gram form runs: it squares the input's condition number once, and over
/// record 4's 5 steps stays within 1.2e-4 of the plain iteration on an ill-conditioned input
/// (docs/optimizers.md); over Track 3's 12 cubic steps the error grows to 1e-5 of the losses of
/// a 16-step run (`train::tests::golden`), where the plain form keeps 1e-7.
pub(crate) const GRAM_MAX_STEPS: usize = 5;

/// `steps` iterations on one wide matrix `x0` (m × n, row-major) into `out`.
fn iterate(
    x0: &[f32],
    out: &mut [f32],
    (m, n): (usize, usize),
    steps: usize,
    coeffs: (f32, f32, f32),
) {
    if steps == 0 {
        out.copy_from_slice(x0);
    } else if gram_is_cheaper(m, n) && steps <= GRAM_MAX_STEPS {
        gram(x0, out, (m, n), steps, coeffs);
    } else {
        plain(x0, out, (m, n), steps, coeffs);
    }
}

/// The record's iteration: A = X·Xᵀ, X ← a·X + (b·A + c·A²)·X.
fn plain(
    x0: &[f32],
    out: &mut [f32],
    (m, n): (usize, usize),
    steps: usize,
    (a, b, c): (f32, f32, f32),
) {
    let mut x = x0.to_vec();
    let mut next = vec![0f32; m * n];
    let mut gram = vec![0f32; m * m];
    let mut poly = vec![0f32; m * m];
    for _ in 0..steps {
        mm_symmetric(m, n, &mut gram, false, 1.0, rows(&x, n), cols(&x, n));
        poly.iter_mut().zip(&gram).for_each(|(p, g)| *p = b * g);
        mm_symmetric(m, m, &mut poly, true, c, rows(&gram, m), rows(&gram, m));
        next.iter_mut().zip(&x).for_each(|(y, v)| *y = a * v);
        mm(
            (m, n, m),
            &mut next,
            n,
            true,
            1.0,
            rows(&poly, m),
            rows(&x, n),
        );
        std::mem::swap(&mut x, &mut next);
    }
    out.copy_from_slice(&x);
}

/// The Gram form (module docs): S = X₀·X₀ᵀ; per step P = a·I + b·S + c·S², S ← P·(P·S),
/// Q ← P·Q; the result Q·X₀.
fn gram(
    x0: &[f32],
    out: &mut [f32],
    (m, n): (usize, usize),
    steps: usize,
    (a, b, c): (f32, f32, f32),
) {
    let mut s = vec![0f32; m * m];
    let mut p = vec![0f32; m * m];
    let mut t = vec![0f32; m * m];
    let mut q: Option<Vec<f32>> = None;
    mm_symmetric(m, n, &mut s, false, 1.0, rows(x0, n), cols(x0, n));
    for step in 0..steps {
        p.iter_mut().zip(&s).for_each(|(p, s)| *p = b * s);
        (0..m).for_each(|i| p[i * m + i] += a);
        mm_symmetric(m, m, &mut p, true, c, rows(&s, m), rows(&s, m));
        if step + 1 < steps {
            mm_symmetric(m, m, &mut t, false, 1.0, rows(&p, m), rows(&s, m));
            mm_symmetric(m, m, &mut s, false, 1.0, rows(&p, m), rows(&t, m));
        }
        q = Some(match q {
            None => p.clone(),
            Some(q) => {
                mm_symmetric(m, m, &mut t, false, 1.0, rows(&p, m), rows(&q, m));
                std::mem::replace(&mut t, q)
            }
        });
    }
    let q = q.expect("steps ≥ 1");
    mm((m, n, m), out, n, false, 1.0, rows(&q, m), rows(x0, n));
}

fn rows(x: &[f32], cols: usize) -> Operand<'_> {
    Operand::rows(x, cols)
}

/// `x` (row-major, `cols` columns) transposed.
fn cols(x: &[f32], cols: usize) -> Operand<'_> {
    Operand::transposed(x, cols)
}
