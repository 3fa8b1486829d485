//! Comparing runs: tables, plots, statistics over seeds (`speedrun compare`).
//!
//! INTERFACE CONTRACT (report, issue 6):
//! - [`load_run`]`(dir) -> Result<RunRecord>` reads one run directory written by the trainer
//!   (`config.toml`, `meta.json`, `log.jsonl`, optional `summary.json`). Every malformed or unreadable
//!   input is a one-line error naming the file and the problem. A trailing unparsable line of
//!   `log.jsonl` is ignored (the trainer may be appending to it right now).
//! - [`compare`]`(dirs, opts) -> Result<String>` loads the runs and renders the comparison table
//!   (markdown, csv or json) plus, for markdown and json, the statistics over seeds.
//! - [`cli::CompareArgs`] / [`cli::run`] implement
//!   `speedrun compare RUN_DIR… [--target X] [--format markdown|csv|json] [--plot out.svg|out.png]
//!   [--html report.html]`.
//!
//! Every per-run number in the table is recomputed from `log.jsonl` (so `--target` can move the
//! target and the numbers always match the log they came from); `summary.json` is only a fallback
//! for fields the log cannot supply (a run whose log has no val records yet).

mod html;
mod load;
pub mod plot;
pub mod stats;
mod table;

#[cfg(test)]
mod stats_tests;
#[cfg(test)]
mod tests;

pub use html::render_html;
pub use load::{load_run, RunRecord, Summary, TrainPoint, ValPoint};
pub use table::{common_target, render, run_rows, RunRow};

use anyhow::Result;
use std::path::PathBuf;

/// Output format of the comparison table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Markdown,
    Csv,
    Json,
}

/// Options of [`compare`].
#[derive(Debug, Clone, Default)]
pub struct CompareOpts {
    /// Target validation loss overriding each run's own `train.target_loss`.
    pub target: Option<f64>,
    pub format: Format,
}

/// Load every run directory in `dirs` (in order) and render the comparison.
pub fn compare(dirs: &[PathBuf], opts: &CompareOpts) -> Result<String> {
    let runs = dirs
        .iter()
        .map(|d| load_run(d))
        .collect::<Result<Vec<_>>>()?;
    Ok(render(&runs, opts))
}

/// The end of `speedrun race`: print the comparison of `dirs` and draw their plot to `plot`.
pub fn race_report(dirs: &[PathBuf], plot_path: &std::path::Path) -> Result<()> {
    let runs = dirs
        .iter()
        .map(|d| load_run(d))
        .collect::<Result<Vec<_>>>()?;
    println!("{}", render(&runs, &CompareOpts::default()));
    plot::plot_runs(&runs, None, plot_path)?;
    println!("plot: {}", plot_path.display());
    Ok(())
}
