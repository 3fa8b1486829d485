//! Top singular triplets by block subspace (power) iteration with Rayleigh–Ritz, warm-started
//! (docs/optimizers.md "neon.rs, topk.rs": O(m·n·p) per iteration instead of Muon's
//! O(m·n·min(m, n))). The two m×n
//! products per iteration run on the tensor's device; only p × p Gram matrices go to the host.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};

use super::linalg::symmetric_eigen;

/// The top-k triplets of M ≈ U·diag(s)·Vᵀ, plus the block to warm-start the next solve from.
pub struct TopK {
    /// Singular values, descending (k of them).
    pub s: Vec<f64>,
    /// Left singular vectors, (m, k).
    pub u: Tensor,
    /// Right singular vectors, (n, k).
    pub v: Tensor,
    /// The whole orthonormal block (n, p), p ≥ k: pass it back as `warm` next step.
    pub block: Tensor,
    /// Iterations run.
    pub iters: usize,
}

/// A fixed, well-spread (n, p) start block (deterministic so runs are reproducible): cosines of
/// incommensurate frequencies have no special alignment with a gradient's singular vectors.
pub fn default_start(n: usize, p: usize, device: &Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..n * p)
        .map(|idx| {
            let (i, j) = ((idx / p) as f64, (idx % p) as f64);
            ((i + 1.0) * (0.7548776662 * (j + 1.0)) + 0.5698402910 * j * j).cos() as f32
        })
        .collect();
    Ok(Tensor::from_vec(data, (n, p), device)?)
}

/// Host copy of a small (p, p) matrix as f64.
fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

/// Orthonormalise the columns of z (n, p) through the eigen-decomposition of zᵀz (a symmetric,
/// pivot-free Cholesky-QR); directions with no energy are left at zero.
fn orthonormalize(z: &Tensor) -> Result<Tensor> {
    let p = z.dim(1)?;
    let gram = host(&z.t()?.matmul(z)?)?;
    let (vals, vecs) = symmetric_eigen(&gram, p);
    let floor = vals[0].max(0.0) * 1e-20;
    let mut t = vec![0f32; p * p];
    for r in 0..p {
        for c in 0..p {
            let inv_sqrt = if vals[c] > floor && vals[c] > 0.0 {
                1.0 / vals[c].sqrt()
            } else {
                0.0
            };
            t[r * p + c] = (vecs[r * p + c] * inv_sqrt) as f32;
        }
    }
    Ok(z.matmul(&Tensor::from_vec(t, (p, p), z.device())?)?)
}

/// Top `k` singular triplets of `m` (rows, cols) iterating a block of `k + oversample` vectors
/// (capped at min(rows, cols)) at most `iters` times, stopping once every returned triplet has
/// residual ‖Mᵀuᵢ − σᵢvᵢ‖ ≤ tol·σ₁.
pub fn top_singular(
    m: &Tensor,
    k: usize,
    oversample: usize,
    warm: Option<&Tensor>,
    iters: usize,
    tol: f64,
) -> Result<TopK> {
    let (rows, cols) = m.dims2()?;
    let p = (k + oversample).min(rows.min(cols));
    if k == 0 || k > p {
        bail!("top_singular: k = {k} must be in 1..={p} for a {rows}x{cols} matrix");
    }
    let m = m.to_dtype(DType::F32)?;
    let start = match warm {
        Some(w) if w.dims() == [cols, p] => w.clone(),
        _ => default_start(cols, p, m.device())?,
    };
    let mut v = orthonormalize(&start)?;
    let mut done = 0;
    loop {
        let w = m.matmul(&v)?; // (rows, p)
        let (vals, vecs) = symmetric_eigen(&host(&w.t()?.matmul(&w)?)?, p);
        // Rayleigh–Ritz: with V orthonormal and (MV)ᵀ(MV) = Q·Λ·Qᵀ, the Ritz vectors are V·Q and
        // M·V·Q/σ, the Ritz values σ = √λ.
        let s: Vec<f64> = vals.iter().take(k).map(|&l| l.max(0.0).sqrt()).collect();
        let q: Vec<f32> = vecs.iter().map(|&x| x as f32).collect();
        let q_full = Tensor::from_vec(q, (p, p), m.device())?;
        let q = q_full.narrow(1, 0, k)?;
        let inv_s: Vec<f32> = s
            .iter()
            .map(|&x| if x > 0.0 { (1.0 / x) as f32 } else { 0.0 })
            .collect();
        let inv_s = Tensor::from_vec(inv_s, (1, k), m.device())?;
        let sig = Tensor::from_vec(
            s.iter().map(|&x| x as f32).collect::<Vec<_>>(),
            (1, k),
            m.device(),
        )?;
        let vk = v.matmul(&q)?;
        let z = m.t()?.matmul(&w)?; // Mᵀ·M·V, also the next iterate
                                    // Residual of each triplet, ‖Mᵀuᵢ − σᵢvᵢ‖ with uᵢ = M·vᵢ/σᵢ, i.e. ‖Z·qᵢ/σᵢ − σᵢ·V·qᵢ‖:
                                    // it bounds the vector error by residual/gap (the Ritz values converge quadratically
                                    // faster, so they are no stopping rule for the vectors).
        let res = (z.matmul(&q)?.broadcast_mul(&inv_s)? - vk.broadcast_mul(&sig)?)?;
        let res = res
            .sqr()?
            .sum(0)?
            .sqrt()?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let worst = res.iter().cloned().fold(0.0f64, f64::max);
        if worst <= tol * s[0].max(f64::MIN_POSITIVE) || done == iters {
            let uk = w.matmul(&q)?.broadcast_mul(&inv_s)?;
            // Keep the rotated block (Ritz vectors first) as the next warm start.
            let block = v.matmul(&q_full)?;
            return Ok(TopK {
                s,
                u: uk,
                v: vk,
                block,
                iters: done,
            });
        }
        v = orthonormalize(&z)?;
        done += 1;
    }
}

/// The exact F* threshold ("From Muon to Neon"): with σ sorted descending, the largest k such that
/// σ_k > (σ₁ + … + σ_k)/(k + 1) gives τ = (σ₁ + … + σ_k)/(k + 1), the root of Σ[σᵢ − τ]₊ = τ.
/// Returns (k, τ) and whether the given σ ran out before the rule stopped (σ_{k+1} > τ unknown).
pub fn fstar_tau(sigma: &[f64]) -> (usize, f64, bool) {
    let mut sum = sigma[0];
    let mut k = 1;
    // Grow while σ_{k+1} > τ_k, which is equivalent to σ_{k+1} > S_{k+1}/(k + 2).
    while k < sigma.len() && sigma[k] > sum / (k as f64 + 1.0) {
        sum += sigma[k];
        k += 1;
    }
    (k, sum / (k as f64 + 1.0), k == sigma.len())
}
