//! A bounds-checked fp32 GEMM on slices, over the `gemm` crate (the one candle's CPU matmul uses).

/// One operand of [`mm`]: a slice and the row and column strides of the matrix inside it.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Operand<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Operand {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Operand {
            data,
            rs: 1,
            cs: cols,
        }
    }

    /// The operand starting at row `r`, column `c`.
    pub fn at(self, r: usize, c: usize) -> Self {
        Operand {
            data: &self.data[r * self.rs + c * self.cs..],
            ..self
        }
    }
}

/// `dst (m × n, row stride dst_rs) = [dst +] beta · lhs (m × k) · rhs (k × n)`, single-threaded
/// (callers parallelise over independent products). Every index the product touches is checked
/// against the slices before the (unsafe) GEMM runs, so a wrong stride panics instead of reading
/// past a buffer.
pub fn mm(
    dims: (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    beta: f32,
    lhs: Operand,
    rhs: Operand,
) {
    into_slice(dims, dst, dst_rs, (accumulate, beta), lhs, rhs, serial())
}

/// [`mm`] on every thread of the rayon pool, for one large product.
pub fn mm_par(
    dims: (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    beta: f32,
    lhs: Operand,
    rhs: Operand,
) {
    into_slice(dims, dst, dst_rs, (accumulate, beta), lhs, rhs, pool())
}

fn into_slice(
    dims: (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    (accumulate, beta): (bool, f32),
    lhs: Operand,
    rhs: Operand,
    par: gemm::Parallelism,
) {
    // SAFETY: `dst` is a live slice of `dst.len()` floats; `product` checks every index against it.
    unsafe {
        product(
            dims,
            (dst.as_mut_ptr(), dst.len(), dst_rs),
            accumulate,
            beta,
            lhs,
            rhs,
            par,
        )
    }
}

/// `beta · lhs (m × k) · rhs (k × n)` as a new row-major (m × n) buffer, on every thread. The
/// buffer is not zero-filled first: the GEMM writes every element without reading it.
pub fn mm_new(dims: (usize, usize, usize), beta: f32, lhs: Operand, rhs: Operand) -> Vec<f32> {
    let (m, n, k) = dims;
    if m == 0 || n == 0 || k == 0 {
        return vec![0f32; m * n];
    }
    let mut out = Vec::<f32>::with_capacity(m * n);
    // SAFETY: the capacity holds m·n floats; with `accumulate` false and k ≥ 1 the GEMM writes
    // each of the m·n elements of the (m × n, row stride n) destination and reads none, so all
    // are initialised when the length is set.
    unsafe {
        product(
            dims,
            (out.as_mut_ptr(), m * n, n),
            false,
            beta,
            lhs,
            rhs,
            pool(),
        );
        out.set_len(m * n);
    }
    out
}

fn serial() -> gemm::Parallelism {
    gemm::Parallelism::None
}

fn pool() -> gemm::Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

/// The checked GEMM behind [`mm`], [`mm_par`] and [`mm_new`].
///
/// # Safety
/// `dst.0` must be valid for writes (and, with `accumulate`, reads) of `dst.1` floats, and not
/// overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    (m, n, k): (usize, usize, usize),
    (dst, dst_len, dst_rs): (*mut f32, usize, usize),
    accumulate: bool,
    beta: f32,
    lhs: Operand,
    rhs: Operand,
    parallelism: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * dst_rs + n <= dst_len, "mm: dst out of range");
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                std::ptr::write_bytes(dst.add(r * dst_rs), 0, n);
            }
        }
        return;
    }
    assert!(
        (m - 1) * lhs.rs + (k - 1) * lhs.cs < lhs.data.len(),
        "mm: lhs out of range"
    );
    assert!(
        (k - 1) * rhs.rs + (n - 1) * rhs.cs < rhs.data.len(),
        "mm: rhs out of range"
    );
    // SAFETY: the asserts above bound every element gemm reads or writes; the caller vouches
    // for dst.
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs.data.as_ptr(),
        lhs.cs as isize,
        lhs.rs as isize,
        rhs.data.as_ptr(),
        rhs.cs as isize,
        rhs.rs as isize,
        1.0,
        beta,
        false,
        false,
        false,
        parallelism,
    )
}

/// Block boundaries that cut `n` into parts of about `target` (at least one part).
pub fn blocks(n: usize, target: usize) -> Vec<(usize, usize)> {
    let parts = (n + target / 2) / target.max(1);
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|p| (p * n / parts, (p + 1) * n / parts))
        .collect()
}

/// `dst (m × m) = [dst +] beta · lhs (m × k) · rhs (k × m)` for a product known to be symmetric
/// (X·Xᵀ, or two commuting symmetric matrices): only the blocks on and below the diagonal are
/// multiplied, about (b + 1)/(2b) of the work for b blocks a side, and the upper triangle is
/// copied from the lower one, so the result is exactly symmetric.
pub fn mm_symmetric(
    m: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    beta: f32,
    lhs: Operand,
    rhs: Operand,
) {
    let bs = blocks(m, SYMMETRIC_BLOCK);
    for (bi, &(i0, i1)) in bs.iter().enumerate() {
        for &(j0, j1) in &bs[..=bi] {
            mm(
                (i1 - i0, j1 - j0, k),
                &mut dst[i0 * m + j0..],
                m,
                accumulate,
                beta,
                lhs.at(i0, 0),
                rhs.at(0, j0),
            );
        }
    }
    for i in 0..m {
        for j in i + 1..m {
            dst[i * m + j] = dst[j * m + i];
        }
    }
}

/// Block size of [`mm_symmetric`]: 768 = 6 × 128 multiplies 21 of 36 blocks (58%), and a
/// 128 × 128 × 768 block is still large enough for the GEMM kernel to run at full speed.
pub const SYMMETRIC_BLOCK: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// The strided product, with and without accumulation and scale, equals the naive one.
    #[test]
    fn mm_matches_naive() {
        let (m, n, k) = (7, 5, 9);
        let (a, b) = (data(m * k, 1), data(k * n, 2));
        let want = naive(m, n, k, &a, &b);
        let mut c = vec![1f32; m * n];
        mm(
            (m, n, k),
            &mut c,
            n,
            true,
            2.0,
            Operand::rows(&a, k),
            Operand::rows(&b, n),
        );
        for (x, w) in c.iter().zip(&want) {
            assert!((x - (1.0 + 2.0 * w)).abs() < 1e-4);
        }
        // bᵀ stored row-major (n × k) read transposed.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        mm(
            (m, n, k),
            &mut c,
            n,
            false,
            1.0,
            Operand::rows(&a, k),
            Operand::transposed(&bt, k),
        );
        for (x, w) in c.iter().zip(&want) {
            assert!((x - w).abs() < 1e-4);
        }
    }

    /// A fresh product equals the product into a zeroed buffer.
    #[test]
    fn mm_new_matches_mm() {
        let (m, n, k) = (9, 13, 5);
        let (a, b) = (data(m * k, 4), data(k * n, 5));
        let got = mm_new((m, n, k), 0.5, Operand::rows(&a, k), Operand::rows(&b, n));
        let want = naive(m, n, k, &a, &b);
        for (x, w) in got.iter().zip(&want) {
            assert!((x - 0.5 * w).abs() < 1e-4);
        }
        assert_eq!(
            mm_new((3, 2, 0), 1.0, Operand::rows(&a, 0), Operand::rows(&b, 2)),
            vec![0.0; 6]
        );
    }

    /// X·Xᵀ through the symmetric blocks equals the naive product, for sizes that do and do not
    /// divide into blocks.
    #[test]
    fn symmetric_product_matches_naive() {
        for (m, k) in [(3, 4), (200, 17), (300, 64)] {
            let x = data(m * k, 3);
            let xt: Vec<f32> = (0..k * m).map(|i| x[(i % m) * k + i / m]).collect();
            let want = naive(m, m, k, &x, &xt);
            let mut c = vec![0f32; m * m];
            mm_symmetric(
                m,
                k,
                &mut c,
                false,
                1.0,
                Operand::rows(&x, k),
                Operand::transposed(&x, k),
            );
            for (x, w) in c.iter().zip(&want) {
                assert!(
                    (x - w).abs() < 1e-3 * (1.0 + w.abs()),
                    "{m}×{k}: {x} vs {w}"
                );
            }
        }
    }

    #[test]
    fn blocks_cover_the_range() {
        assert_eq!(blocks(768, 128).len(), 6);
        assert_eq!(blocks(100, 128), vec![(0, 100)]);
        assert_eq!(blocks(0, 128), vec![(0, 0)]);
        let b = blocks(300, 128);
        assert_eq!(b.first().unwrap().0, 0);
        assert_eq!(b.last().unwrap().1, 300);
        assert!(b.windows(2).all(|w| w[0].1 == w[1].0));
    }
}
