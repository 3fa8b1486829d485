//! Statistics over seeds: grouping, mean ± sample std, the Track-3 acceptance rule and Welch's
//! t-test (two-sided) with a self-contained Student-t CDF.
use super::load::RunRecord;
use super::table::RunRow;
use serde::Serialize;
use std::fmt::Write;

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

/// Margin of the modded-nanogpt Track-3 acceptance rule as given in our brief (issue 6):
/// `(target − mean_loss)·√n`; a group passes when it is ≥ [`TRACK3_MARGIN`].
pub fn track3_margin(target: f64, mean_loss: f64, n: usize) -> f64 {
    (target - mean_loss) * (n as f64).sqrt()
}
pub const TRACK3_MARGIN: f64 = 0.004;

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

/// Continued fraction of the incomplete beta function, evaluated with the modified Lentz
/// method; converges fast for x < (a+1)/(a+b+2).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-15;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        // Even step of the fraction.
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        // Odd step.
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
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

/// Statistics of one group of runs that differ only in seed (and name).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupStats {
    pub label: String,
    pub optim: String,
    pub runs: Vec<String>,
    pub seeds: Vec<Option<i64>>,
    pub target: Option<f64>,
    /// Final val losses of the runs that have one.
    pub final_losses: Vec<f64>,
    pub final_loss_mean: Option<f64>,
    pub final_loss_std: Option<f64>,
    /// `(target − mean)·√n` and whether it is ≥ 0.004 (Track-3 rule).
    pub track3_margin: Option<f64>,
    pub track3_pass: Option<bool>,
    /// Steps to target of the runs that reached it (`reached` of `n`).
    pub steps_to_target: Vec<f64>,
    pub reached: usize,
    pub n: usize,
    /// Runs still going (no finished summary): their "final" loss is the latest val loss.
    pub running: usize,
    /// Runs whose final val loss is NaN/inf (left out of the loss statistics).
    pub diverged: usize,
    pub steps_mean: Option<f64>,
    pub steps_std: Option<f64>,
}

impl GroupStats {
    /// `n`, flagging runs that have not finished (their numbers will still move).
    pub fn n_label(&self) -> String {
        let mut notes = Vec::new();
        if self.running > 0 {
            notes.push(format!("{} running", self.running));
        }
        if self.diverged > 0 {
            notes.push(format!("{} diverged", self.diverged));
        }
        if notes.is_empty() {
            self.n.to_string()
        } else {
            format!("{} ({})", self.n, notes.join(", "))
        }
    }
}

/// Welch tests between two groups.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub final_loss: Option<Welch>,
    pub steps_to_target: Option<Welch>,
}

/// Remove the keys that are allowed to differ inside a group: top-level `name`, and `seed`
/// wherever it appears (the trainer may keep data and init seeds in sub-tables).
fn strip_seed(v: &toml::Value, top: bool) -> toml::Value {
    match v {
        toml::Value::Table(t) => toml::Value::Table(
            t.iter()
                .filter(|(k, _)| !(k.as_str() == "seed" || (top && k.as_str() == "name")))
                .map(|(k, v)| (k.clone(), strip_seed(v, false)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Group indices of runs whose configs are equal up to seed and name, in first-seen order.
/// A run without a config is its own group (nothing says what it shares with others).
pub fn group_runs(runs: &[RunRecord]) -> Vec<Vec<usize>> {
    let mut keys: Vec<String> = Vec::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let empty = r.config.as_table().is_none_or(|t| t.is_empty());
        let key = if empty {
            format!("\u{0}{}", r.dir.display())
        } else {
            // toml::Table is ordered by key, so equal configs print equal.
            strip_seed(&r.config, true).to_string()
        };
        match keys.iter().position(|k| *k == key) {
            Some(g) => groups[g].push(i),
            None => {
                keys.push(key);
                groups.push(vec![i]);
            }
        }
    }
    groups
}

/// A label for a group: the common prefix of its run names without a trailing seed marker
/// (`muon_s0`, `muon_s1` → `muon`), else the first name.
fn group_label(names: &[&str]) -> String {
    let first = names[0];
    if names.len() == 1 {
        return first.to_string();
    }
    let mut len = first.len();
    for n in &names[1..] {
        len = len.min(
            first
                .char_indices()
                .zip(n.chars())
                .take_while(|((_, a), b)| a == b)
                .map(|((i, a), _)| i + a.len_utf8())
                .last()
                .unwrap_or(0),
        );
    }
    let mut p = &first[..len];
    p = p.trim_end_matches(|c: char| c.is_ascii_digit());
    for suffix in ["seed", "_s", "-s", "s"] {
        if let Some(s) = p.strip_suffix(suffix) {
            if p.len() > suffix.len() {
                p = s;
                break;
            }
        }
    }
    let p = p.trim_end_matches(['_', '-', '.', ' ']);
    if p.is_empty() {
        first.to_string()
    } else {
        p.to_string()
    }
}

/// Per-group statistics (one entry per group, including singletons).
pub fn group_stats(runs: &[RunRecord], rows: &[RunRow]) -> Vec<GroupStats> {
    let mut labels_seen: Vec<String> = Vec::new();
    group_runs(runs)
        .into_iter()
        .map(|idx| {
            let names: Vec<&str> = idx.iter().map(|&i| rows[i].name.as_str()).collect();
            let mut label = group_label(&names);
            // Distinct groups may share a prefix; keep labels unique for the comparison table.
            while labels_seen.contains(&label) {
                label.push('\'');
            }
            labels_seen.push(label.clone());
            let target = rows[idx[0]].target;
            // Diverged runs (non-finite loss) would make the mean meaningless; they are counted
            // separately and shown next to n.
            let all_losses: Vec<f64> = idx.iter().filter_map(|&i| rows[i].final_val_loss).collect();
            let final_losses: Vec<f64> = all_losses
                .iter()
                .copied()
                .filter(|l| l.is_finite())
                .collect();
            let diverged = all_losses.len() - final_losses.len();
            let steps: Vec<f64> = idx
                .iter()
                .filter_map(|&i| rows[i].target_step.map(|s| s as f64))
                .collect();
            let loss_ms = mean_std(&final_losses);
            let steps_ms = mean_std(&steps);
            let margin = match (target, loss_ms) {
                (Some(t), Some((m, _))) => Some(track3_margin(t, m, final_losses.len())),
                _ => None,
            };
            GroupStats {
                label,
                optim: rows[idx[0]].optim.clone(),
                runs: names.iter().map(|s| s.to_string()).collect(),
                seeds: idx.iter().map(|&i| rows[i].seed).collect(),
                target,
                final_loss_mean: loss_ms.map(|x| x.0),
                final_loss_std: loss_ms.and_then(|x| x.1),
                track3_margin: margin,
                track3_pass: margin.map(|m| m >= TRACK3_MARGIN),
                final_losses,
                reached: steps.len(),
                n: idx.len(),
                running: idx.iter().filter(|&&i| !rows[i].finished).count(),
                diverged,
                steps_mean: steps_ms.map(|x| x.0),
                steps_std: steps_ms.and_then(|x| x.1),
                steps_to_target: steps,
            }
        })
        .collect()
}

/// Welch tests between every pair of groups that both have at least two final losses (a single run
/// has no variance to test against).
pub fn compare_groups(groups: &[GroupStats]) -> Vec<Comparison> {
    let mut out = Vec::new();
    let testable: Vec<&GroupStats> = groups
        .iter()
        .filter(|g| g.final_losses.len() >= 2)
        .collect();
    for (i, a) in testable.iter().enumerate() {
        for b in &testable[i + 1..] {
            out.push(Comparison {
                a: a.label.clone(),
                b: b.label.clone(),
                final_loss: welch(&a.final_losses, &b.final_losses),
                steps_to_target: welch(&a.steps_to_target, &b.steps_to_target),
            });
        }
    }
    out
}

fn pm(mean: Option<f64>, std: Option<f64>, prec: usize) -> String {
    match (mean, std) {
        (Some(m), Some(s)) => format!("{m:.prec$} ± {s:.prec$}"),
        (Some(m), None) => format!("{m:.prec$}"),
        _ => "-".to_string(),
    }
}

/// Markdown section with the group table and the pairwise Welch tests.
pub fn render_markdown(groups: &[GroupStats], cmps: &[Comparison]) -> String {
    let mut out = String::from("## Statistics over seeds\n\n");
    out.push_str(
        "| group | optimizer | n | final val loss (mean ± std) | Track-3 (target−mean)·√n ≥ 0.004 | steps to target (mean ± std) | reached |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|\n");
    for g in groups {
        let pass = match (g.track3_margin, g.track3_pass) {
            (Some(m), Some(p)) => format!("{} ({m:.4})", if p { "pass" } else { "fail" }),
            _ => "-".to_string(),
        };
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {}/{} |",
            g.label.replace('|', "\\|"),
            g.optim,
            g.n_label(),
            pm(g.final_loss_mean, g.final_loss_std, 4),
            pass,
            pm(g.steps_mean, g.steps_std, 1),
            g.reached,
            g.n
        )
        .unwrap();
    }
    if !cmps.is_empty() {
        out.push_str("\nWelch's t-test (two-sided p):\n\n| a | b | final val loss p | steps to target p |\n|---|---|---|---|\n");
        let p = |w: &Option<Welch>| {
            w.map(|w| format!("{:.4} (t={:.3}, df={:.2})", w.p, w.t, w.df))
                .unwrap_or_else(|| "- (needs ≥2 values per side)".to_string())
        };
        for c in cmps {
            writeln!(
                out,
                "| {} | {} | {} | {} |",
                c.a.replace('|', "\\|"),
                c.b.replace('|', "\\|"),
                p(&c.final_loss),
                p(&c.steps_to_target)
            )
            .unwrap();
        }
    }
    out
}
