//! Small dense linear algebra on the host, in f64: the Cholesky inverse Newton-Muon needs (candle
//! has no factorisations; the matrices are at most 768²) and the symmetric eigensolver of the
//! p × p Rayleigh–Ritz problems in Neon's subspace iteration (p ≤ ~20). Row-major storage.

/// Inverse of the symmetric positive definite `n × n` matrix `a` via a Cholesky factor L
/// (K = L·Lᵀ, K⁻¹ = L⁻ᵀ·L⁻¹). `None` when a pivot is not positive (or not finite), i.e. the
/// matrix is not numerically positive definite; the caller then keeps its previous inverse.
pub fn cholesky_inverse(a: &[f64], n: usize) -> Option<Vec<f64>> {
    assert_eq!(a.len(), n * n);
    // L row-major, lower triangle.
    let mut l = vec![0.0f64; n * n];
    for j in 0..n {
        let lj = j * n;
        let d = a[lj + j] - dot(&l[lj..lj + j], &l[lj..lj + j]);
        if !(d > 0.0 && d.is_finite()) {
            return None;
        }
        let djj = d.sqrt();
        l[lj + j] = djj;
        for i in j + 1..n {
            let li = i * n;
            let s = a[li + j] - dot(&l[li..li + j], &l[lj..lj + j]);
            l[li + j] = s / djj;
        }
    }
    // Row j of `lit` holds column j of L⁻¹ (entries i ≥ j), by forward substitution L·x = e_j.
    let mut lit = vec![0.0f64; n * n];
    let mut x = vec![0.0f64; n];
    for j in 0..n {
        x.iter_mut().for_each(|v| *v = 0.0);
        for i in j..n {
            let li = i * n;
            let rhs = if i == j { 1.0 } else { 0.0 };
            x[i] = (rhs - dot(&l[li + j..li + i], &x[j..i])) / l[li + i];
        }
        lit[j * n + j..j * n + n].copy_from_slice(&x[j..n]);
    }
    // K⁻¹[i][j] = Σ_{k ≥ max(i,j)} L⁻¹[k][i]·L⁻¹[k][j] = row i of `lit` · row j of `lit`.
    let mut inv = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let v = dot(&lit[i * n + j..i * n + n], &lit[j * n + j..j * n + n]);
            inv[i * n + j] = v;
            inv[j * n + i] = v;
        }
    }
    Some(inv)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Eigen-decomposition of a small symmetric matrix by cyclic Jacobi rotations. Returns the
/// eigenvalues in descending order and the eigenvectors as the columns of a row-major n × n
/// matrix in the same order.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n);
    let mut m = a.to_vec();
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale: f64 = m.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j].powi(2))
            .sum();
        if off.sqrt() <= 1e-15 * scale || scale == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // Rotation that zeroes m[p][q] (Golub & Van Loan, symmetric Schur 2×2).
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| {
        m[j * n + j]
            .partial_cmp(&m[i * n + i])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let vals = order.iter().map(|&i| m[i * n + i]).collect();
    let mut vecs = vec![0.0f64; n * n];
    for (newc, &oldc) in order.iter().enumerate() {
        for r in 0..n {
            vecs[r * n + newc] = v[r * n + oldc];
        }
    }
    (vals, vecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A·A⁻¹ = I for a well-conditioned SPD matrix, and a non-PD matrix is reported, not inverted.
    #[test]
    fn cholesky_inverse_is_an_inverse_and_detects_non_pd() {
        let n = 5;
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] =
                    1.0 / (1.0 + (i as f64 - j as f64).abs()) + if i == j { 1.0 } else { 0.0 };
            }
        }
        let inv = cholesky_inverse(&a, n).unwrap();
        for i in 0..n {
            for j in 0..n {
                let s: f64 = (0..n).map(|k| a[i * n + k] * inv[k * n + j]).sum();
                assert!(
                    (s - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12,
                    "({i},{j}) {s}"
                );
            }
        }
        a[0] = -1.0;
        assert!(cholesky_inverse(&a, n).is_none());
    }

    /// Jacobi returns A·v = λ·v, λ sorted descending.
    #[test]
    fn jacobi_eigenpairs() {
        let n = 4;
        let a: Vec<f64> = (0..n * n)
            .map(|k| ((k / n) as f64 - (k % n) as f64).cos() + ((k / n + k % n) as f64).sin())
            .collect();
        let sym: Vec<f64> = (0..n * n).map(|k| a[k] + a[(k % n) * n + k / n]).collect();
        let (vals, vecs) = symmetric_eigen(&sym, n);
        for w in vals.windows(2) {
            assert!(w[0] >= w[1]);
        }
        for c in 0..n {
            for r in 0..n {
                let av: f64 = (0..n).map(|k| sym[r * n + k] * vecs[k * n + c]).sum();
                assert!((av - vals[c] * vecs[r * n + c]).abs() < 1e-10);
            }
        }
    }
}
