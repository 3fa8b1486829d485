//! The report of a race (`speedrun race`; `speedrun compare --race OUT` rebuilds it): the tuning
//! table, the race at each contestant's best point, the statistics over seeds, and each
//! contestant against the best one (Welch's t-test and Track 3's pairwise rule, one verdict
//! sentence each). Written as `OUT/report.md` and `OUT/report.html` with the plots beside them.
//!
//! The statistics are those `compare` computes: each contestant's runs at its best point form one
//! seed group ([`group_stats`]), and the tests between groups are [`welch`] and
//! [`track3_pairwise_margin`] on the same numbers.

mod render;
mod verdict;

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use super::record::RunRecord;
use super::row::{common_target, run_rows, RunRow};
use super::seeds::{group_stats, GroupStats};
use super::stats::{track3_pairwise_margin, welch, Welch};
use super::Comparison;
use crate::train::race::grid::fmt_value;
use crate::train::race::{tuning, EntryState, Plan};
pub use verdict::{BEST_RULE, SIGNIFICANCE};

/// One point of a contestant's grid and what its seed-0 run came to.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PointRow {
    pub run: String,
    /// One value per tuned key.
    pub values: Vec<f64>,
    /// Each value as a multiple of the contestant's preset value (`0.5x`).
    pub times: Vec<Option<String>>,
    pub target_step: Option<usize>,
    pub final_val_loss: Option<f64>,
    pub diverged_at: Option<usize>,
    pub chosen: bool,
}

/// How a contestant's tuning ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Tuned {
    /// The best point lies inside the grid on every tuned key.
    Bracketed,
    /// The best point is still on an edge: the optimum may lie outside what was tried.
    Untuned,
    /// No `--tune`: the contestant ran as given.
    AsGiven,
    /// Grid points are still to run.
    Pending,
}

/// One contestant: its tuning and its runs at the best point.
#[derive(Debug, Clone, Serialize)]
pub struct ContestantReport {
    pub label: String,
    pub optim: String,
    /// The tuned keys that apply to its method.
    pub keys: Vec<String>,
    /// Points of its first grid (every contestant gets the same number per key).
    pub grid_size: usize,
    pub points: Vec<PointRow>,
    pub extensions: usize,
    pub tuned: Tuned,
    pub note: String,
    /// The chosen point, `lr=0.003`.
    pub best: Option<String>,
    /// The seed group of its runs at the best point.
    pub group: Option<GroupStats>,
    /// (seed, steps to target) of those runs, for the seed-by-seed comparison.
    #[serde(skip)]
    pub seed_steps: Vec<(Option<i64>, Option<u64>)>,
    /// Mean final step of those runs (Track 3's pairwise rule prices steps).
    #[serde(skip)]
    pub mean_final_step: Option<f64>,
    /// Their run directories.
    #[serde(skip)]
    pub final_dirs: Vec<PathBuf>,
}

/// One contestant against the best one.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PairVerdict {
    pub other: String,
    pub best: String,
    /// Seeds both ran; in how many each reached the target first, both at the same step, or
    /// neither.
    pub seeds: usize,
    pub best_first: usize,
    pub other_first: usize,
    pub ties: usize,
    pub neither: usize,
    /// Welch's t-test of the final val losses, and of the steps to target where both sides
    /// have two or more.
    pub final_loss: Option<Welch>,
    pub steps_to_target: Option<Welch>,
    /// Track 3's pairwise margin of the best contestant over this one (≥ 0.004: significant).
    pub track3_pairwise: Option<f64>,
    /// Welch's p on the final loss is below [`SIGNIFICANCE`].
    pub significant: Option<bool>,
    pub sentence: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct RaceReport {
    pub command: String,
    pub preset: String,
    pub target: Option<f64>,
    pub seeds: u64,
    pub extend: usize,
    pub tune: Vec<String>,
    pub rule: &'static str,
    pub best_rule: &'static str,
    pub contestants: Vec<ContestantReport>,
    /// The best contestant's label.
    pub best: Option<String>,
    pub pairs: Vec<PairVerdict>,
}

fn point_rows(plan: &Plan, i: usize, s: &EntryState) -> Vec<PointRow> {
    let e = &plan.entries[i];
    let chosen = s.tuning.best.filter(|_| s.tuning.done());
    s.tuning
        .tried
        .iter()
        .enumerate()
        .map(|(j, t)| PointRow {
            run: plan.run_name(e, &t.point, 0),
            values: t.point.clone(),
            times: e
                .axes
                .iter()
                .zip(&t.point)
                .map(|(a, v)| a.times(*v))
                .collect(),
            target_step: t.outcome.target_step,
            final_val_loss: t.outcome.final_val_loss,
            diverged_at: t.outcome.diverged_at,
            chosen: chosen == Some(j),
        })
        .collect()
}

fn contestant(plan: &Plan, i: usize, s: &EntryState) -> Result<ContestantReport> {
    let e = &plan.entries[i];
    let t = &s.tuning;
    let tuned = match (t.done(), e.axes.is_empty(), t.bracketed) {
        (false, _, _) => Tuned::Pending,
        (true, true, _) => Tuned::AsGiven,
        (true, false, true) => Tuned::Bracketed,
        (true, false, false) => Tuned::Untuned,
    };
    let best = t.best_point().filter(|_| t.done()).map(|p| {
        e.axes
            .iter()
            .zip(p)
            .map(|(a, v)| format!("{}={}", a.key, fmt_value(*v, a.integer)))
            .collect::<Vec<_>>()
            .join(", ")
    });
    let final_dirs: Vec<PathBuf> = s.final_runs.iter().map(|(_, d)| d.clone()).collect();
    let runs: Vec<RunRecord> = super::load_runs(&final_dirs)?;
    let rows = run_rows(&runs, None);
    let group = group_stats(&runs, &rows).into_iter().next().map(|mut g| {
        g.label = e.contestant.label.clone();
        g
    });
    let finals: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.final_step)
        .map(|s| s as f64)
        .collect();
    Ok(ContestantReport {
        label: e.contestant.label.clone(),
        optim: e.contestant.optim.to_string(),
        keys: e.axes.iter().map(|a| a.key.clone()).collect(),
        grid_size: e.axes.iter().map(|a| a.values.len()).product(),
        points: point_rows(plan, i, s),
        extensions: t.extensions,
        tuned,
        note: t.note.clone(),
        best,
        group,
        seed_steps: rows.iter().map(|r| (r.seed, r.target_step)).collect(),
        mean_final_step: (!finals.is_empty())
            .then(|| finals.iter().sum::<f64>() / finals.len() as f64),
        final_dirs,
    })
}

/// The seeds both contestants ran, and who reached the target first in each.
#[derive(Debug, Default)]
struct SeedsFirst {
    seeds: usize,
    best: usize,
    other: usize,
    ties: usize,
    neither: usize,
}

/// Seed by seed (both runs of a seed start from the same weights): a run that reaches the target
/// beats one that does not.
fn seeds_first(best: &ContestantReport, other: &ContestantReport) -> SeedsFirst {
    let mut f = SeedsFirst::default();
    for (seed, sb) in &best.seed_steps {
        let Some((_, so)) = other.seed_steps.iter().find(|(s, _)| s == seed) else {
            continue;
        };
        f.seeds += 1;
        match (sb, so) {
            (None, None) => f.neither += 1,
            (Some(_), None) => f.best += 1,
            (None, Some(_)) => f.other += 1,
            (Some(x), Some(y)) if x < y => f.best += 1,
            (Some(x), Some(y)) if x > y => f.other += 1,
            _ => f.ties += 1,
        }
    }
    f
}

fn pair(best: &ContestantReport, other: &ContestantReport, target: Option<f64>) -> PairVerdict {
    let (gb, go) = (best.group.as_ref(), other.group.as_ref());
    let final_loss = gb
        .zip(go)
        .and_then(|(b, o)| welch(&o.final_losses, &b.final_losses));
    let steps_to_target = gb
        .zip(go)
        .and_then(|(b, o)| welch(&o.steps_to_target, &b.steps_to_target));
    let side = |c: &ContestantReport| {
        let g = c.group.as_ref()?;
        Some(crate::report::stats::Track3Side {
            mean_loss: g.final_loss_mean?,
            steps: c.mean_final_step?,
            n: g.final_losses.len(),
        })
    };
    let track3_pairwise = side(best)
        .zip(side(other))
        .map(|(b, o)| track3_pairwise_margin(b, o));
    let f = seeds_first(best, other);
    let mut v = PairVerdict {
        other: other.label.clone(),
        best: best.label.clone(),
        seeds: f.seeds,
        best_first: f.best,
        other_first: f.other,
        ties: f.ties,
        neither: f.neither,
        final_loss,
        steps_to_target,
        track3_pairwise,
        significant: final_loss.map(|w| w.p < SIGNIFICANCE),
        sentence: String::new(),
    };
    v.sentence = verdict::sentence(best, other, &v, target);
    v
}

/// Build the report of the race in `plan.out` from its run directories.
pub fn build(plan: &Plan) -> Result<RaceReport> {
    let states = plan.states()?;
    let contestants = states
        .iter()
        .enumerate()
        .map(|(i, s)| contestant(plan, i, s))
        .collect::<Result<Vec<_>>>()?;
    let rows: Vec<RunRow> = contestants
        .iter()
        .map(|c| super::load_runs(&c.final_dirs))
        .collect::<Result<Vec<_>>>()?
        .iter()
        .flat_map(|runs| run_rows(runs, None))
        .collect();
    let target = common_target(&rows);
    let best = verdict::best_contestant(&contestants);
    let pairs = match best {
        Some(b) => contestants
            .iter()
            .enumerate()
            .filter(|(i, c)| *i != b && c.group.is_some())
            .map(|(_, c)| pair(&contestants[b], c, target))
            .collect(),
        None => Vec::new(),
    };
    Ok(RaceReport {
        command: plan.command.clone(),
        preset: plan.preset.clone(),
        target,
        seeds: plan.seeds,
        extend: plan.extend,
        tune: plan.tune.iter().map(|t| t.text.clone()).collect(),
        rule: tuning::RULE,
        best_rule: BEST_RULE,
        best: best.map(|b| contestants[b].label.clone()),
        contestants,
        pairs,
    })
}

/// Build the report of the race in `out` and write `report.md`, `report.html`, the plots
/// (`race.png`, `tuning.png`, and the race plot at `extra_plot` too) and `runs.html` (every
/// run of the race, interactive). Returns the markdown.
pub fn write_report(out: &Path, extra_plot: Option<&Path>) -> Result<String> {
    let plan = Plan::read(out)?;
    let report = build(&plan)?;
    let dirs: Vec<PathBuf> = report
        .contestants
        .iter()
        .flat_map(|c| c.final_dirs.iter().cloned())
        .collect();
    let runs = super::load_runs(&dirs)?;
    let cmp = Comparison::new(&runs, None);
    render::write_all(&plan, &report, &cmp, extra_plot)
}

/// The report as JSON (`compare --race OUT --format json`).
pub fn report_json(out: &Path) -> Result<String> {
    let report = build(&Plan::read(out)?)?;
    Ok(serde_json::to_string_pretty(&report)? + "\n")
}
