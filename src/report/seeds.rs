//! Seed groups: runs whose configs differ only in seed (and name), with their statistics and
//! the pairwise Welch tests between groups.
use super::record::RunRecord;
use super::row::RunRow;
use super::stats::{mean_std, track3_margin, welch, Welch, TRACK3_MARGIN};
use serde::Serialize;

/// Statistics of one group of runs that differ only in seed (and name).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupStats {
    pub label: String,
    /// Indices of the group's runs in the compared runs.
    #[serde(skip)]
    pub members: Vec<usize>,
    pub optim: String,
    pub runs: Vec<String>,
    pub seeds: Vec<Option<i64>>,
    pub target: Option<f64>,
    /// Final val losses of the runs that have one.
    pub final_losses: Vec<f64>,
    pub final_loss_mean: Option<f64>,
    pub final_loss_std: Option<f64>,
    /// `(target − mean)·√n` and whether it is ≥ 0.004 (modded-nanogpt's Track-3 rule).
    pub track3_margin: Option<f64>,
    pub track3_pass: Option<bool>,
    /// Steps to target of the runs that reached it (`reached` of `n`).
    pub steps_to_target: Vec<f64>,
    pub reached: usize,
    pub n: usize,
    /// Runs not finished (running, stopped, interrupted, crashed): their "final" loss is their
    /// latest val loss, and it may still move.
    pub unfinished: usize,
    /// Runs whose final val loss is NaN/inf (left out of the loss statistics).
    pub diverged: usize,
    pub steps_mean: Option<f64>,
    pub steps_std: Option<f64>,
}

impl GroupStats {
    /// `n`, flagging runs that have not finished (their numbers will still move).
    pub fn n_label(&self) -> String {
        let mut notes = Vec::new();
        if self.unfinished > 0 {
            notes.push(format!("{} unfinished", self.unfinished));
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
pub struct PairTest {
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
                members: idx.clone(),
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
                unfinished: idx
                    .iter()
                    .filter(|&&i| !rows[i].finished && rows[i].diverged_at.is_none())
                    .count(),
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
pub fn compare_groups(groups: &[GroupStats]) -> Vec<PairTest> {
    let mut out = Vec::new();
    let testable: Vec<&GroupStats> = groups
        .iter()
        .filter(|g| g.final_losses.len() >= 2)
        .collect();
    for (i, a) in testable.iter().enumerate() {
        for b in &testable[i + 1..] {
            out.push(PairTest {
                a: a.label.clone(),
                b: b.label.clone(),
                final_loss: welch(&a.final_losses, &b.final_losses),
                steps_to_target: welch(&a.steps_to_target, &b.steps_to_target),
            });
        }
    }
    out
}
