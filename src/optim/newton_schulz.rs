//! Quintic Newton–Schulz orthogonalisation (Jordan et al. 2024, the Muon blog; modded-nanogpt
//! record 4's `zeropower_via_newtonschulz5`): approximates msgn(U) = P·Qᵀ for U = P·S·Qᵀ.
//!
//! In exact arithmetic every reference runs the same iteration; in bf16 each rounds where its
//! code rounds, so the GPU path keeps one [`NsForm`] per reference. On the CPU the iteration runs
//! in fp32, where the forms agree to fp32 rounding, on the faster kernels of `ns_cpu.rs`.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};

use super::ns_cpu::NewtonSchulzCpu;

/// Record-4 coefficients, chosen to maximise the slope at 0; the iteration then maps singular
/// values into roughly [0.7, 1.2] instead of exactly 1 (Jordan et al. 2024), which the record
/// found harmless.
pub const NS_COEFFS: (f64, f64, f64) = (3.4445, -4.7750, 2.0315);
/// Added to ‖U‖_F before dividing so a zero update stays zero instead of NaN.
pub const NS_EPS: f64 = 1e-7;

/// How a reference script writes the iteration, which decides where bf16 rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsForm {
    /// Record 4 (train_gpt2.py:38-44), as PyTorch runs it op by op: `X = G.bfloat16() /
    /// (G.norm() + eps)`, then `A = X Xᵀ; B = A X; X = a·X + b·B + c·A @ B`, where `c·A @ B` is
    /// `(c·A) @ B` (equal precedence, left to right). Every product and sum is rounded to bf16.
    #[default]
    Record4,
    /// NM-1 (train_gpt_newton_muon_1.py:65-95): the same normalisation, then `A = X Xᵀ`, `B =
    /// b·A + c·A·Aᵀ` in one Triton kernel that accumulates in fp32 and rounds once
    /// (triton_kernels.py, `ba_plus_cAA`), `C = B X`, and `C += a·X` rounded once.
    Nm1,
    /// Track 3 (train_gpt_simple.py:163-180): `X = G.bfloat16()`, transposed if tall, `X /=
    /// X.norm() + 1e-7` (the norm of the bf16 values, rounded to bf16), then `A = X Xᵀ;
    /// B = b·A + (c·A) @ A; X = a·X + B @ X`, each op rounded.
    Track3,
}

/// One Newton–Schulz configuration: steps, coefficients and the bf16 form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NsSpec {
    pub steps: usize,
    pub coeffs: (f64, f64, f64),
    pub form: NsForm,
}

impl NsSpec {
    /// Record 4's quintic iteration, `steps` times, in `form`.
    pub fn record4(steps: usize, form: NsForm) -> Self {
        NsSpec {
            steps,
            coeffs: NS_COEFFS,
            form,
        }
    }

    fn coeffs_f32(&self) -> (f32, f32, f32) {
        let (a, b, c) = self.coeffs;
        (a as f32, b as f32, c as f32)
    }
}

/// `spec.steps` Newton–Schulz iterations on `u`, a matrix (rows, cols) or a batch
/// (batch, rows, cols) of same-shape matrices, each normalised by its own Frobenius norm. The
/// iteration runs in `dtype`: fp32 (the CPU) or bf16 in the rounding of `spec.form` (the GPU, as
/// the references train). The result is returned in f32.
pub fn newton_schulz(u: &Tensor, spec: NsSpec, dtype: DType) -> Result<Tensor> {
    let (steps, form) = (spec.steps, spec.form);
    let batched = match u.rank() {
        2 => false,
        3 => true,
        r => bail!("newton_schulz: expected a 2-D or 3-D tensor, got rank {r}"),
    };
    let u = if batched { u.clone() } else { u.unsqueeze(0)? };
    let (_, rows, cols) = u.dims3()?;
    let u = u.to_dtype(DType::F32)?;
    let norm = (u
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sum_keepdim(D::Minus2)?
        .sqrt()?
        + NS_EPS)?;
    let x = match dtype {
        // Track 3 casts and then divides by the norm of the bf16 values (rounded to bf16).
        DType::BF16 if form == NsForm::Track3 => {
            let x = u.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
            let n = x
                .sqr()?
                .sum_keepdim(D::Minus1)?
                .sum_keepdim(D::Minus2)?
                .sqrt()?;
            let n = (n.to_dtype(DType::BF16)?.to_dtype(DType::F32)? + NS_EPS)?;
            let n = n.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
            x.broadcast_div(&n)?.to_dtype(DType::BF16)?
        }
        // The others cast to bf16 first and divide the bf16 values by the fp32 norm, with one
        // rounding of the quotient (PyTorch computes bf16 ÷ fp32 in fp32).
        DType::BF16 => u
            .to_dtype(DType::BF16)?
            .to_dtype(DType::F32)?
            .broadcast_div(&norm)?
            .to_dtype(DType::BF16)?,
        DType::F32 => u.broadcast_div(&norm)?,
        other => bail!("newton_schulz: unsupported dtype {other:?} (fp32 or bf16)"),
    };
    // Work on the wide orientation so X·Xᵀ is the smaller Gram matrix.
    let tall = rows > cols;
    let x = if tall { x.transpose(1, 2)? } else { x };
    let x = x.contiguous()?;
    let x = match dtype {
        // fp32 on the CPU: the GEMM kernel with symmetric products and the Gram form (ns_cpu.rs).
        DType::F32 if x.device().is_cpu() => x.apply_op1_no_bwd(&NewtonSchulzCpu {
            steps,
            coeffs: spec.coeffs_f32(),
        })?,
        DType::F32 => plain_iterations(x, steps, spec.coeffs)?,
        _ => match form {
            NsForm::Record4 => record4_bf16(x, steps, spec.coeffs)?,
            NsForm::Nm1 => nm1_bf16(x, steps, spec.coeffs)?,
            NsForm::Track3 => track3_bf16(x, steps, spec.coeffs)?,
        },
    };
    let mut x = x.to_dtype(DType::F32)?;
    if tall {
        x = x.transpose(1, 2)?.contiguous()?;
    }
    Ok(if batched { x } else { x.squeeze(0)? })
}

/// The iteration on a wide batch `x` (B, m, n), m ≤ n, in x's dtype with candle's own rounding:
/// A = X·Xᵀ, X ← a·X + (b·A + c·A²)·X. Three GEMMs a step: 2·m²·n + m³ multiply-adds.
pub(crate) fn plain_iterations(
    mut x: Tensor,
    steps: usize,
    (a, b, c): (f64, f64, f64),
) -> Result<Tensor> {
    for _ in 0..steps {
        let gram = x.matmul(&x.t()?)?;
        let poly = ((&gram * b)? + (gram.matmul(&gram)? * c)?)?;
        x = ((&x * a)? + poly.matmul(&x)?)?;
    }
    Ok(x)
}

/// `k·t` for a bf16 `t`, rounded once: PyTorch multiplies a bf16 tensor by a Python float in
/// fp32 with the scalar unrounded, where candle's bf16 affine would round `k` to bf16 first.
fn scaled_bf16(t: &Tensor, k: f64) -> Result<Tensor> {
    Ok((t.to_dtype(DType::F32)? * k)?.to_dtype(DType::BF16)?)
}

/// [`NsForm::Record4`] on a wide bf16 batch: each op of the record's line rounded to bf16, as
/// PyTorch runs it op by op (the GEMMs accumulate in fp32 and round their output).
fn record4_bf16(mut x: Tensor, steps: usize, (a, b, c): (f64, f64, f64)) -> Result<Tensor> {
    for _ in 0..steps {
        let gram = x.matmul(&x.t()?)?;
        let bx = gram.matmul(&x)?;
        let head = (scaled_bf16(&x, a)? + scaled_bf16(&bx, b)?)?;
        let cab = scaled_bf16(&gram, c)?.matmul(&bx)?;
        x = (head + cab)?;
    }
    Ok(x)
}

/// [`NsForm::Nm1`] on a wide bf16 batch: A = X·Xᵀ (rounded), B = b·A + c·A·Aᵀ accumulated in
/// fp32 and rounded once, C = B·X (rounded), X = C + a·X rounded once.
fn nm1_bf16(mut x: Tensor, steps: usize, (a, b, c): (f64, f64, f64)) -> Result<Tensor> {
    for _ in 0..steps {
        let gram = x.matmul(&x.t()?)?.to_dtype(DType::F32)?;
        let poly = ((gram.matmul(&gram.t()?)? * c)? + (&gram * b)?)?.to_dtype(DType::BF16)?;
        let cx = poly.matmul(&x)?.to_dtype(DType::F32)?;
        x = (cx + (x.to_dtype(DType::F32)? * a)?)?.to_dtype(DType::BF16)?;
    }
    Ok(x)
}

/// [`NsForm::Track3`] on a wide bf16 batch, op by op: A = X·Xᵀ, B = b·A + (c·A)·A,
/// X = a·X + B·X, every product and sum rounded to bf16.
fn track3_bf16(mut x: Tensor, steps: usize, (a, b, c): (f64, f64, f64)) -> Result<Tensor> {
    for _ in 0..steps {
        let gram = x.matmul(&x.t()?)?;
        let poly = (scaled_bf16(&gram, b)? + scaled_bf16(&gram, c)?.matmul(&gram)?)?;
        x = (scaled_bf16(&x, a)? + poly.matmul(&x)?)?;
    }
    Ok(x)
}
