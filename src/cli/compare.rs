//! `speedrun compare RUN_DIR… [--target X] [--format markdown|csv|json] [--plot out.svg|out.png]
//! [--html report.html]`.
use crate::report::{load_run, plot, render, render_html, CompareOpts, Format};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run directories (`runs/<name>`), globs (`'runs/muon_*'`, expanded here when the shell did
    /// not) or directories of run directories (`runs/`).
    #[arg(required = true)]
    pub runs: Vec<String>,
    /// Target val loss; overrides each run's own `train.target_loss` (steps/tokens/time to target
    /// are recomputed from the val records).
    #[arg(long)]
    pub target: Option<f64>,
    /// Table format written to stdout.
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    pub format: Format,
    /// Write the val-loss plot here (`.svg` or `.png`).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// A run directory is one the trainer wrote into.
fn is_run_dir(p: &Path) -> bool {
    p.is_dir()
        && ["log.jsonl", "summary.json", "config.toml"]
            .iter()
            .any(|f| p.join(f).is_file())
}

fn expand_dir(p: PathBuf, out: &mut Vec<PathBuf>) -> Result<()> {
    if is_run_dir(&p) {
        out.push(p);
        return Ok(());
    }
    if !p.is_dir() {
        bail!("{}: no such run directory", p.display());
    }
    let mut subs: Vec<PathBuf> = std::fs::read_dir(&p)
        .with_context(|| format!("{}: cannot list", p.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|s| is_run_dir(s))
        .collect();
    if subs.is_empty() {
        bail!(
            "{}: neither a run directory nor a directory of runs",
            p.display()
        );
    }
    subs.sort();
    out.extend(subs);
    Ok(())
}

/// Expand globs and directories-of-runs into run directories, keeping argument order and
/// dropping duplicates.
pub fn expand_run_dirs(args: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        if a.contains(['*', '?', '[']) {
            let mut hits: Vec<PathBuf> = glob::glob(a)
                .with_context(|| format!("{a}: bad glob pattern"))?
                .filter_map(|r| r.ok())
                .filter(|p| p.is_dir())
                .collect();
            if hits.is_empty() {
                bail!("{a}: glob matched no directory");
            }
            hits.sort();
            for h in hits {
                expand_dir(h, &mut out)?;
            }
        } else {
            expand_dir(PathBuf::from(a), &mut out)?;
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.canonicalize().unwrap_or_else(|_| p.clone())));
    Ok(out)
}

pub fn run(args: CompareArgs) -> Result<()> {
    let dirs = expand_run_dirs(&args.runs)?;
    let runs = dirs
        .iter()
        .map(|d| load_run(d))
        .collect::<Result<Vec<_>>>()?;
    let opts = CompareOpts {
        target: args.target,
        format: args.format,
    };
    print!("{}", render(&runs, &opts));
    // Plots and html draw the override target, else the runs' common one.
    let rows = crate::report::run_rows(&runs, args.target);
    let target = args.target.or(crate::report::common_target(&rows));
    if let Some(p) = &args.plot {
        plot::plot_runs(&runs, target, p)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &args.html {
        let page = render_html(&runs, args.target)?;
        std::fs::write(p, page).with_context(|| format!("{}: cannot write", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

impl clap::ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Self] {
        &[Format::Markdown, Format::Csv, Format::Json]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(match self {
            Format::Markdown => "markdown",
            Format::Csv => "csv",
            Format::Json => "json",
        }))
    }
}
