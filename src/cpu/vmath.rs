//! Vectorised row math for the fused CPU kernels: `exp`, sums and maxima over slices, compiled
//! for AVX-512 or AVX2 when the CPU has them (checked at run time; the crate itself is built for
//! baseline x86-64) and plainly elsewhere. libm's scalar `expf` was 5–12% of a training step
//! (`perf`, docs/perf.md): the softmaxes of the attention and of the 50257-way cross-entropy.

/// exp(x) for x ≤ ~88 (larger x saturate at e^88.38), branch-free so that loops over it
/// vectorise: x = n·ln 2 + r with |r| ≤ ln2/2, e^r by the Cephes `expf` polynomial, 2^n put
/// into the exponent bits. Relative error ≤ 3e-7 (`tests::exp_is_accurate`); −∞ and anything
/// below the smallest normal's log give 0, NaN stays NaN.
#[inline(always)]
pub fn exp1(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n·LN2_HI is exact for the |n| ≤ 127 that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const LO: f32 = -87.336_54;
    // 1.5·2²³: adding it rounds x·log2(e) to the nearest integer n, which then sits in the low
    // mantissa bits; reading n from the bits avoids a float-to-int conversion, whose saturating
    // semantics in Rust keep the loop from vectorising.
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(LO, 88.376_26);
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    let ni = t.to_bits() as i32 - MAGIC.to_bits() as i32;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    let e = y * f32::from_bits(((ni + 127) << 23) as u32);
    if x < LO {
        0.0
    } else {
        e
    }
}

/// erf(x) from the Chebyshev fit of erfc in Numerical Recipes (2nd ed., §6.2, `erfcc`): fractional
/// error of erfc below 1.2e-7 for every x; with [`exp1`]'s rounding, erf is within 4e-7
/// absolutely (`tests::erf_is_accurate`, measured 3.9e-7; a few ulps of values near 1); branch-free apart from a select, one [`exp1`], so it vectorises.
#[inline(always)]
pub fn erf1(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = 0.170_872_77_f32;
    p = p * t - 0.822_152_23;
    p = p * t + 1.488_515_9;
    p = p * t - 1.135_204;
    p = p * t + 0.278_868_07;
    p = p * t - 0.186_288_06;
    p = p * t + 0.096_784_18;
    p = p * t + 0.374_091_96;
    p = p * t + 1.000_023_7;
    let erfc = t * exp1(-z * z - 1.265_512_2 + t * p);
    let erf = 1.0 - erfc;
    if x < 0.0 {
        -erf
    } else {
        erf
    }
}

/// Run `$body` compiled for the best of AVX-512F, AVX2+FMA and baseline that this CPU has.
macro_rules! dispatch {
    ($name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty $body:block) => {
        pub fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) -> $ret { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret { body($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, checked on the line above.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has AVX2 and FMA, checked above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

dispatch!(exp_shifted(dst: &mut [f32], src: &[f32], shift: f32) -> () {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = exp1(s - shift);
    }
});

dispatch!(exp_shifted_in_place(xs: &mut [f32], shift: f32) -> () {
    for x in xs.iter_mut() {
        *x = exp1(*x - shift);
    }
});

// Exact GELU `0.5·x·(1 + erf(x/√2))` of `h` into `a`, and its slope `0.5·(1 + erf(x/√2)) +
// x·φ(x)` (φ the standard normal density) into `slope`.
dispatch!(gelu_and_slope(a: &mut [f32], slope: &mut [f32], h: &[f32]) -> () {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for ((a, s), &x) in a.iter_mut().zip(slope.iter_mut()).zip(h) {
        let cdf = 0.5 * (1.0 + erf1(x * std::f32::consts::FRAC_1_SQRT_2));
        *a = x * cdf;
        *s = cdf + x * INV_SQRT_2PI * exp1(-0.5 * x * x);
    }
});

dispatch!(scale_in_place(xs: &mut [f32], k: f32) -> () {
    for x in xs.iter_mut() {
        *x *= k;
    }
});

// Σ xs in f64, in eight interleaved partial sums (each lane exact to f64 rounding, so the order
// does not matter at fp32 precision).
dispatch!(sum_f64(xs: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&x| x as f64).sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i] as f64;
        }
    }
    acc.iter().sum::<f64>() + tail
});

/// Σ exp(x − shift) over `xs`, the sum in f64 (through a stack buffer, no allocation).
pub fn sum_exp_shifted(xs: &[f32], shift: f32) -> f64 {
    let mut buf = [0f32; 1024];
    xs.chunks(buf.len())
        .map(|c| {
            let b = &mut buf[..c.len()];
            exp_shifted(b, c, shift);
            sum_f64(b)
        })
        .sum()
}

// The largest element (−∞ for an empty slice; NaN if any element is NaN).
dispatch!(max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = xs.chunks_exact(16);
    let mut m = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut nan = chunks.remainder().iter().any(|x| x.is_nan());
    for c in chunks {
        for i in 0..16 {
            nan |= c[i].is_nan();
            acc[i] = acc[i].max(c[i]);
        }
    }
    for a in acc {
        m = m.max(a);
    }
    if nan {
        f32::NAN
    } else {
        m
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Against f64 `exp` over the whole range the kernels use, every 1e-4 in [−90, 10].
    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        for i in 0..1_000_000 {
            let x = -90.0 + i as f32 * 1e-4;
            let want = (x as f64).exp();
            let got = exp1(x) as f64;
            if want > f32::MIN_POSITIVE as f64 {
                worst = worst.max((got - want).abs() / want);
            } else {
                assert!(got <= 2.0 * f32::MIN_POSITIVE as f64, "exp({x}) = {got}");
            }
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert_eq!(exp1(f32::NEG_INFINITY), 0.0);
        assert!(exp1(f32::NAN).is_nan());
        assert_eq!(exp1(0.0), 1.0);
    }

    /// Against f64 erf (libm's, through candle) every 1e-4 over [−6, 6].
    #[test]
    fn erf_is_accurate() {
        let mut worst = 0f64;
        for i in 0..120_001 {
            let x = -6.0 + i as f64 * 1e-4;
            let want = candle_core::cpu::erf::erf_f64(x);
            worst = worst.max((erf1(x as f32) as f64 - want).abs());
        }
        assert!(worst < 5e-7, "worst absolute error {worst:e}");
    }

    /// The dispatched slice kernels equal the scalar forms, at lengths around the lane widths.
    #[test]
    fn slice_kernels_match_scalar_forms() {
        for n in [0, 1, 7, 8, 15, 16, 17, 100, 50257] {
            let xs: Vec<f32> = (0..n)
                .map(|i| ((i * 37) % 101) as f32 * 0.1 - 5.0)
                .collect();
            let mut e = vec![0f32; n];
            exp_shifted(&mut e, &xs, 1.5);
            let mut e2 = xs.clone();
            exp_shifted_in_place(&mut e2, 1.5);
            for ((a, b), &x) in e.iter().zip(&e2).zip(&xs) {
                assert_eq!(a, b);
                assert_eq!(*a, exp1(x - 1.5));
            }
            let s: f64 = xs.iter().map(|&x| x as f64).sum();
            assert!((sum_f64(&xs) - s).abs() <= 1e-9 * (1.0 + s.abs()));
            let m = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&xs), m);
        }
        let mut with_nan = vec![1.0f32; 40];
        with_nan[33] = f32::NAN;
        assert!(max(&with_nan).is_nan());
    }
}
