//! The comparison, built once from the loaded runs: one row per run, the seed groups with their
//! statistics, the pairwise Welch tests and the target. Every renderer (markdown, csv, json,
//! plot, html) draws from this one value.
use super::record::RunRecord;
use super::row::{common_target, run_rows, RunRow};
use super::seeds::{compare_groups, group_stats, GroupStats, PairTest};

#[derive(Debug, Clone)]
pub struct Comparison<'a> {
    pub runs: &'a [RunRecord],
    /// One row per run, in input order.
    pub rows: Vec<RunRow>,
    /// Runs that differ only in seed, with their statistics (singletons included).
    pub groups: Vec<GroupStats>,
    /// Welch tests between the groups that have at least two final losses.
    pub tests: Vec<PairTest>,
    /// The target drawn in plots and html: the override, else the runs' common one.
    pub target: Option<f64>,
}

impl<'a> Comparison<'a> {
    /// Compare `runs` against `target` (overriding each run's own `train.target_loss`).
    pub fn new(runs: &'a [RunRecord], target: Option<f64>) -> Self {
        let rows = run_rows(runs, target);
        let groups = group_stats(runs, &rows);
        let tests = compare_groups(&groups);
        let target = target.or(common_target(&rows));
        Comparison {
            runs,
            rows,
            groups,
            tests,
            target,
        }
    }

    /// The target all rows share, if they share one.
    pub fn common_target(&self) -> Option<f64> {
        common_target(&self.rows)
    }
}
