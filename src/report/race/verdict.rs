//! Which contestant is best, and one sentence per contestant against it.
use super::{ContestantReport, PairVerdict, Tuned};
use crate::report::stats::TRACK3_MARGIN;

/// How the best contestant is picked from the runs at each one's best point.
pub const BEST_RULE: &str = "best contestant: the largest share of seeds reaching the target, \
then the fewest mean steps to it, then the lowest mean final val loss";

/// The two-sided level below which Welch's p counts as a significant difference.
pub const SIGNIFICANCE: f64 = 0.05;

/// Index of the best contestant under [`BEST_RULE`] among those with runs at their best point.
pub fn best_contestant(cs: &[ContestantReport]) -> Option<usize> {
    let key = |c: &ContestantReport| {
        let g = c.group.as_ref()?;
        let share = g.reached as f64 / g.n.max(1) as f64;
        let steps = g.steps_mean.unwrap_or(f64::INFINITY);
        let loss = g.final_loss_mean.unwrap_or(f64::INFINITY);
        Some((-share, steps, loss))
    };
    (0..cs.len())
        .filter_map(|i| Some((i, key(&cs[i])?)))
        .min_by(|(_, a), (_, b)| {
            a.0.total_cmp(&b.0)
                .then(a.1.total_cmp(&b.1))
                .then(a.2.total_cmp(&b.2))
        })
        .map(|(i, _)| i)
}

/// `muon`, or `adamw (untuned)` when its optimum was not bracketed.
fn name(c: &ContestantReport) -> String {
    match c.tuned {
        Tuned::Untuned => format!("{} (untuned)", c.label),
        _ => c.label.clone(),
    }
}

/// `0.22`, `0.053`, `0.0031`, `3e-7`: two significant digits.
fn p_text(p: f64) -> String {
    if p < 1e-4 {
        return format!("{p:.0e}");
    }
    let decimals = (1 - p.log10().floor() as i32).max(0) as usize;
    format!("{p:.decimals$}")
}

/// Who reaches the target first, seed by seed.
fn who_first(
    best: &ContestantReport,
    other: &ContestantReport,
    v: &PairVerdict,
    target: &str,
) -> String {
    let n = v.seeds;
    let mut extra = Vec::new();
    if v.ties > 0 {
        extra.push(format!("{} at the same step", v.ties));
    }
    if v.neither > 0 {
        extra.push(format!("neither in {}", v.neither));
    }
    match (n, v.best_first + v.other_first) {
        (0, _) => "no seed ran on both sides".into(),
        (_, 0) if v.neither == n => format!("neither reaches {target} in any of {n} seeds"),
        (_, 0) if v.ties == n => format!("both reach {target} at the same step in all {n} seeds"),
        (_, 0) => format!(
            "both reach {target} at the same step in {} of {n} seeds, neither in {}",
            v.ties, v.neither
        ),
        _ => {
            if v.other_first > 0 {
                extra.insert(0, format!("{} in {}", other.label, v.other_first));
            }
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!(" ({})", extra.join(", "))
            };
            format!(
                "{} reaches {target} first in {} of {n} seeds{extra}",
                best.label, v.best_first
            )
        }
    }
}

/// One sentence: who reaches the target first seed by seed, the final losses, and whether the
/// difference is significant.
pub fn sentence(
    best: &ContestantReport,
    other: &ContestantReport,
    v: &PairVerdict,
    target: Option<f64>,
) -> String {
    let target = target.map_or("the target".to_string(), |t| format!("{t}"));
    let mut s = format!(
        "{} vs {}: {}",
        name(other),
        name(best),
        who_first(best, other, v, &target)
    );
    let mean = |c: &ContestantReport| c.group.as_ref().and_then(|g| g.final_loss_mean);
    if let (Some(mo), Some(mb)) = (mean(other), mean(best)) {
        s.push_str(&format!("; final val loss {mo:.4} vs {mb:.4}"));
    }
    match v.final_loss {
        Some(w) if w.p < SIGNIFICANCE => s.push_str(&format!(
            ", a significant difference (Welch p = {})",
            p_text(w.p)
        )),
        Some(w) => s.push_str(&format!(
            ", no significant difference (Welch p = {})",
            p_text(w.p)
        )),
        None => s.push_str(", not testable (Welch's test needs 2 seeds a side, with spread)"),
    }
    if let Some(m) = v.track3_pairwise {
        let (cmp, verdict) = if m >= TRACK3_MARGIN {
            ("≥", "passes")
        } else {
            ("<", "fails")
        };
        s.push_str(&format!(
            "; Track 3's pairwise rule {verdict} ({m:.4} {cmp} {TRACK3_MARGIN})"
        ));
    }
    s.push('.');
    s
}
