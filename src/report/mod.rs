//! Comparing runs (`speedrun compare`): tables, plots and statistics over seeds.
//!
//! The report is a pipeline. [`expand_run_dirs`] finds the run directories, [`load_run`] reads
//! each one (docs/run-format.md) into a [`RunRecord`], and [`Comparison::new`] builds, once, the
//! rows (one per run, recomputed from `log.jsonl` so that `--target` can move the target), the
//! seed groups with their statistics and the Welch tests between them. The comparison is then
//! rendered as markdown, csv or json ([`Comparison::render`]), a plot ([`Comparison::plot`]) or
//! a self-contained HTML page ([`Comparison::html`]).
//!
//! Files import only downwards: `stats` (pure maths) and `record` (the run's data) at the
//! bottom, the readers `jsonl`, `textlog` and `load` on it, then `row`, `seeds`, `comparison`,
//! `cells`, and the renderers `table`, `plot`, `html` on top.

mod cells;
mod comparison;
mod discover;
pub mod html;
mod jsonl;
mod load;
mod palette;
pub mod plot;
pub mod race;
mod record;
mod row;
pub mod seeds;
mod series;
pub mod stats;
mod table;
pub mod tensorboard;
mod textlog;
mod ticks;
pub mod watch;

#[cfg(test)]
mod tests;

pub use comparison::Comparison;
pub use discover::{expand_run_dirs, is_run_dir, is_text_log_file};
pub use load::load_run;
pub use record::{RunRecord, Scalars, Source, Status, TrainPoint, ValPoint, UNTIMED_STEPS};
pub use row::{common_target, run_rows, RunRow};
pub use seeds::{GroupStats, PairTest};
pub use series::{Entries, Entry, TrainBasis, XAxis};
pub use table::Format;
pub(crate) use table::{md_escape, md_table};
pub use textlog::TEXT_LOG_OPTIM;

use anyhow::Result;
use std::path::PathBuf;

/// Options of [`compare`].
#[derive(Debug, Clone, Default)]
pub struct CompareOpts {
    /// Target validation loss overriding each run's own `train.target_loss`.
    pub target: Option<f64>,
    pub format: Format,
}

/// Load every run in `dirs`, in order. Of several, one that cannot be read is reported on
/// stderr and left out, so that a damaged run does not hide the others; it is an error when
/// there is only one, or when none can be read.
pub fn load_runs(dirs: &[PathBuf]) -> Result<Vec<RunRecord>> {
    let mut runs = Vec::new();
    let mut first_error = None;
    for d in dirs {
        match load_run(d) {
            Ok(r) => runs.push(r),
            Err(e) if dirs.len() == 1 => return Err(e),
            Err(e) => {
                let msg = crate::error_line(&e);
                crate::out::err_line(&format!("warning: {msg}; left out"));
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if runs.is_empty() => Err(e.context("none of the runs could be read")),
        _ => Ok(runs),
    }
}

/// Load every run directory in `dirs` (in order) and render the comparison.
pub fn compare(dirs: &[PathBuf], opts: &CompareOpts) -> Result<String> {
    let runs = load_runs(dirs)?;
    Ok(Comparison::new(&runs, opts.target).render(opts.format))
}
