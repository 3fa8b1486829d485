//! The statistics behind the seed groups, on plain numbers: mean ± sample std, the margins of
//! modded-nanogpt's Track-3 rules (a record's, and one result against another), and Welch's t-test (two-sided) with a self-contained
//! Student-t CDF (via the regularized incomplete beta function).
use serde::Serialize;

/// Mean and sample standard deviation (n−1 denominator; `None` for n < 2).
pub fn mean_std(xs: &[f64]) -> Option<(f64, Option<f64>)> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let std = (xs.len() >= 2)
        .then(|| (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Some((mean, std))
}

/// Exponential moving average with weight `w` on the past, debiased as TensorBoard's scalar
/// smoothing does (`s_i = m_i / (1 − wⁱ)` with `m_i = w·m_{i−1} + (1 − w)·y_i`, `m_0 = 0`), so
/// the curve starts at the first value instead of rising from 0. Non-finite values pass through
/// and leave the average as it was.
pub fn ema_debiased(ys: &[f64], w: f64) -> Vec<f64> {
    let (mut m, mut n) = (0.0, 0);
    ys.iter()
        .map(|&y| {
            if !y.is_finite() {
                return y;
            }
            m = w * m + (1.0 - w) * y;
            n += 1;
            m / (1.0 - w.powi(n))
        })
        .collect()
}

/// Margin of modded-nanogpt's Track-3 acceptance rule for a new record: `(target − mean_loss)·√n`
/// over the record's seeds; a group passes when it is ≥ [`TRACK3_MARGIN`].
pub fn track3_margin(target: f64, mean_loss: f64, n: usize) -> f64 {
    (target - mean_loss) * (n as f64).sqrt()
}
pub const TRACK3_MARGIN: f64 = 0.004;

/// Val loss that 100 steps are worth in Track 3's pairwise rule: 200 fewer steps of its result #12
/// raised the mean loss by 0.0091 (modded-nanogpt, records/track_3_optimization/README.md,
/// "Pairwise statistical significance").
pub const TRACK3_LOSS_PER_100_STEPS: f64 = 0.0045;

/// One side of Track 3's pairwise rule: a result's mean final val loss over `n` runs that all
/// stopped after `steps` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Track3Side {
    pub mean_loss: f64,
    pub steps: f64,
    pub n: usize,
}

/// Margin of Track 3's pairwise rule that `a` is better than `b`:
/// `((loss_b − loss_a) + 0.0045·(steps_b − steps_a)/100) / √(1/n_a + 1/n_b)`, where the second term
/// prices the steps `a` saves in val loss; `a` is significantly better when the margin is ≥
/// [`TRACK3_MARGIN`] (the same one-sided z-test at σ = 0.0013 as [`track3_margin`]).
pub fn track3_pairwise_margin(a: Track3Side, b: Track3Side) -> f64 {
    let loss_diff = b.mean_loss - a.mean_loss;
    let step_diff = TRACK3_LOSS_PER_100_STEPS * (b.steps - a.steps) / 100.0;
    (loss_diff + step_diff) / (1.0 / a.n as f64 + 1.0 / b.n as f64).sqrt()
}

/// ln Γ(x) for x > 0 by the Lanczos approximation (g = 7, 9 coefficients; relative error
/// ~1e-15), with the reflection formula below 0.5.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

const TINY: f64 = 1e-300;

/// `x`, kept away from zero so the Lentz recurrences never divide by it.
fn nonzero(x: f64) -> f64 {
    if x.abs() < TINY {
        TINY
    } else {
        x
    }
}

/// Continued fraction of the incomplete beta function, evaluated with the modified Lentz
/// method (Numerical Recipes, 3rd ed., §6.4); converges fast for x < (a+1)/(a+b+2).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const EPS: f64 = 1e-15;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / nonzero(1.0 - qab * x / qap);
    let mut h = d;
    // One Lentz step with partial numerator `aa`: updates c and d, returns the factor of h.
    let step = |aa: f64, c: &mut f64, d: &mut f64| {
        *d = 1.0 / nonzero(1.0 + aa * *d);
        *c = nonzero(1.0 + aa / *c);
        *d * *c
    };
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        // Even step of the fraction.
        h *= step(m * (b - m) * x / ((qam + m2) * (a + m2)), &mut c, &mut d);
        // Odd step.
        let del = step(
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
            &mut c,
            &mut d,
        );
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// Regularized incomplete beta function I_x(a, b), a, b > 0.
pub fn reg_inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    // Use the symmetry I_x(a,b) = 1 − I_{1−x}(b,a) where the fraction converges faster.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Student-t CDF with `df` (real, > 0) degrees of freedom:
/// for t ≥ 0, F(t) = 1 − ½·I_{df/(df+t²)}(df/2, ½); symmetric for t < 0.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * reg_inc_beta(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// Result of Welch's unequal-variance t-test.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Welch {
    pub t: f64,
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
}

/// Welch's t-test of mean(a) = mean(b). `None` when a sample has fewer than 2 values or both
/// variances are zero (t undefined; scipy returns nan there).
pub fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    let (ma, sa) = mean_std(a)?;
    let (mb, sb) = mean_std(b)?;
    let (va, vb) = (sa?.powi(2) / a.len() as f64, sb?.powi(2) / b.len() as f64);
    let se2 = va + vb;
    if se2 <= 0.0 {
        return None;
    }
    let t = (ma - mb) / se2.sqrt();
    // Welch–Satterthwaite degrees of freedom.
    let df = se2 * se2 / (va * va / (a.len() as f64 - 1.0) + vb * vb / (b.len() as f64 - 1.0));
    let p = reg_inc_beta(df / 2.0, 0.5, df / (df + t * t)).clamp(0.0, 1.0);
    Some(Welch { t, df, p })
}
