//! One `speedrun compare` invocation as a value ([`ReportSpec`]): what to read, what to write.
//! [`ReportSpec::run_once`] reads the runs and writes every output once; [`watch`] does it again
//! every few seconds while the runs are being written (`compare --watch`), finding runs that
//! appear meanwhile and carrying on through a read that fails (shown, then retried).
use super::html::HtmlOpts;
use super::plot::{check_out_dir, plot_format, PlotOpts};
use super::{expand_run_dirs, load_runs, Comparison, Format};
use anyhow::Result;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ReportSpec {
    /// Run directories, text logs, globs or directories of runs.
    pub runs: Vec<String>,
    pub target: Option<f64>,
    pub format: Format,
    pub plot: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub plot_opts: PlotOpts,
}

impl ReportSpec {
    /// Everything that can be checked before reading a run: the plot's format and that the
    /// output directories exist.
    pub fn check(&self) -> Result<()> {
        if let Some(p) = &self.plot {
            plot_format(p)?;
            check_out_dir(p)?;
        }
        if let Some(h) = &self.html {
            check_out_dir(h)?;
        }
        Ok(())
    }

    /// Read the runs, write the plot and the page, and return the table. `refresh` makes the
    /// page reload itself every that many seconds.
    pub fn run_once(&self, refresh: Option<u64>) -> Result<String> {
        let runs = load_runs(&expand_run_dirs(&self.runs)?)?;
        let cmp = Comparison::new(&runs, self.target);
        if let Some(p) = &self.plot {
            cmp.plot(p, &self.plot_opts)?;
        }
        if let Some(h) = &self.html {
            let opts = HtmlOpts {
                smooth: self.plot_opts.smooth,
                x: self.plot_opts.x,
                log_y: self.plot_opts.log_y,
                refresh,
            };
            crate::fsutil::write_atomic(h, cmp.html(&opts)?.as_bytes())?;
        }
        Ok(cmp.render(self.format))
    }

    /// The files this spec writes, for the user.
    pub fn outputs(&self) -> Vec<&PathBuf> {
        self.plot.iter().chain(&self.html).collect()
    }
}

/// `--watch`: every `interval`, read the runs again, rewrite the outputs and show the table on
/// `out` (the screen cleared first when `clear`). A failed read is shown and retried at the next
/// tick rather than ending the watch. Runs `ticks` times, or until interrupted when `None`.
pub fn watch(
    spec: &ReportSpec,
    interval: Duration,
    out: &mut dyn Write,
    clear: bool,
    ticks: Option<usize>,
    mut sleep: impl FnMut(Duration),
) -> Result<()> {
    let secs = interval.as_secs().max(1);
    let mut n = 0;
    loop {
        let body = match spec.run_once(Some(secs)) {
            Ok(table) => table,
            Err(e) => format!("error: {}\n", crate::error_line(&e)),
        };
        if clear {
            write!(out, "\x1b[H\x1b[2J")?;
        }
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let files: Vec<String> = spec
            .outputs()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        writeln!(
            out,
            "speedrun compare --watch: {now}, every {secs} s{}{} (Ctrl-C to stop)\n",
            if files.is_empty() { "" } else { ", writing " },
            files.join(", ")
        )?;
        write!(out, "{body}")?;
        if !clear {
            writeln!(out)?;
        }
        out.flush()?;
        n += 1;
        if ticks.is_some_and(|t| n >= t) {
            return Ok(());
        }
        sleep(interval);
    }
}
