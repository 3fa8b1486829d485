//! Axis ticks: round values (1, 2 or 5 × 10ᵏ apart) labelled with just the decimals their spacing
//! needs, so that no two labels read alike; and the unit an axis is shown in.
use super::series::XAxis;

/// Ticks in `[lo, hi]` about `target` apart in count, and the decimals that tell them apart.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, usize) {
    let span = hi - lo;
    if span.is_nan() || span <= 0.0 || !span.is_finite() {
        return (vec![lo], 2);
    }
    let rough = span / target.max(1) as f64;
    let mag = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * mag);
    // The nudge keeps a step of exactly 10ᵏ from reading as 10ᵏ⁻¹ through rounding.
    let decimals = (-(step.log10() + 1e-9).floor()).max(0.0) as usize;
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    // Multiples of the step, computed from integers so they print exactly.
    let ticks = (first..=last).map(|i| i as f64 * step).collect();
    (ticks, decimals)
}

/// Ticks for a log-scaled axis over `[lo, hi]` (lo > 0): round values at least `min_gap` apart
/// in log10 units, so that labels do not collide where the scale is compressed.
pub fn log_ticks(lo: f64, hi: f64, target: usize, min_gap: f64) -> (Vec<f64>, usize) {
    let (cands, decimals) = nice_ticks(lo, hi, target * 3);
    let mut out: Vec<f64> = Vec::new();
    // From the top down: the large values sit closest together on a log scale.
    for &t in cands.iter().rev().filter(|t| **t > 0.0) {
        if out.last().is_none_or(|&p| p.log10() - t.log10() >= min_gap) {
            out.push(t);
        }
    }
    out.reverse();
    (out, decimals)
}

/// Ticks for a log axis over `[lo, hi]` (lo > 0) that may span decades, at most `target` of
/// them: 1, 2 and 5 × 10ᵏ, else 1 and 3 × 10ᵏ, else the decades (every other one, and so on,
/// when still too many); a range too narrow for three of those gets round values inside it.
pub fn decade_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let pick = |ms: &[u32]| -> Vec<f64> {
        (k0..=k1)
            .flat_map(|k| ms.iter().map(move |m| format!("{m}e{k}")))
            .filter_map(|t| t.parse::<f64>().ok())
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    for ms in [&[1, 2, 5][..], &[1, 3]] {
        let t = pick(ms);
        if t.len() < 3 {
            break;
        }
        if t.len() <= target {
            return t;
        }
    }
    let decades = pick(&[1]);
    if decades.len() >= 3 {
        let every = decades.len().div_ceil(target.max(1));
        return decades.into_iter().step_by(every).collect();
    }
    let gap = (hi / lo).log10() / (1.5 * target.max(1) as f64);
    log_ticks(lo, hi, target, gap).0
}

/// How an x axis is shown: a divisor from raw units and the axis title.
pub fn x_unit(axis: XAxis, max_raw: f64) -> (f64, &'static str) {
    match axis {
        XAxis::Step => (1.0, "step"),
        XAxis::Tokens if max_raw >= 1e9 => (1e9, "tokens (billions)"),
        XAxis::Tokens if max_raw >= 1e6 => (1e6, "tokens (millions)"),
        XAxis::Tokens if max_raw >= 1e4 => (1e3, "tokens (thousands)"),
        XAxis::Tokens => (1.0, "tokens"),
        // Minutes once a run is longer than 10 minutes.
        XAxis::Time if max_raw > 600_000.0 => (60_000.0, "train time (min)"),
        XAxis::Time => (1000.0, "train time (s)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axes_tick_at_round_values_in_every_decade() {
        assert_eq!(
            decade_ticks(1e-4, 1.1e-2, 8),
            vec![1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2]
        );
        assert_eq!(
            decade_ticks(1e-5, 0.2, 8),
            vec![1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
        );
        assert_eq!(decade_ticks(1e-12, 1.0, 4), vec![1e-12, 1e-8, 1e-4, 1.0]);
        // Inside one decade: round values, still in order and in range.
        let t = decade_ticks(0.0011, 0.0032, 8);
        assert!(t.len() >= 3 && t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
        assert!(t.iter().all(|v| (0.0011..=0.0032).contains(v)), "{t:?}");
    }

    fn labels(lo: f64, hi: f64, n: usize) -> Vec<String> {
        let (t, d) = nice_ticks(lo, hi, n);
        t.iter().map(|v| format!("{v:.d$}")).collect()
    }

    #[test]
    fn tick_labels_are_distinct_and_round() {
        // A 5-step run: the old labels read "0 0 1 2 2 3 4 4 5".
        assert_eq!(labels(0.0, 5.2, 8), ["0", "1", "2", "3", "4", "5"]);
        assert_eq!(
            labels(0.0, 2.7, 6),
            ["0.0", "0.5", "1.0", "1.5", "2.0", "2.5"]
        );
        // A short run's time axis (seconds): no longer all "0".
        assert_eq!(labels(0.0, 0.31, 5), ["0.0", "0.1", "0.2", "0.3"]);
        assert_eq!(labels(5.55, 6.3, 6), ["5.6", "5.8", "6.0", "6.2"]);
        assert_eq!(
            labels(0.0, 6200.0, 7),
            ["0", "1000", "2000", "3000", "4000", "5000", "6000"]
        );
        for (lo, hi) in [(0.0, 1e-3), (3.2, 3.31), (0.0, 123456.0), (10.0, 11.0)] {
            let l = labels(lo, hi, 7);
            let mut d = l.clone();
            d.dedup();
            assert_eq!(l, d, "{lo}..{hi}");
            assert!(l.len() >= 3, "{lo}..{hi}: {l:?}");
        }
        assert_eq!(
            nice_ticks(1.0, 1.0, 5).0,
            [1.0],
            "an empty range has one tick"
        );
    }

    #[test]
    fn log_ticks_keep_their_distance() {
        let (t, d) = log_ticks(3.2, 11.0, 8, 0.03);
        let l: Vec<String> = t.iter().map(|v| format!("{v:.d$}")).collect();
        assert!(
            l.contains(&"4.0".to_string()) && l.contains(&"10.0".to_string()),
            "{l:?}"
        );
        for w in t.windows(2) {
            assert!(w[1].log10() - w[0].log10() >= 0.03, "{t:?}");
        }
    }
}
