//! `speedrun compare RUN_DIR… [--target X] [--format markdown|csv|json] [--plot out.svg|out.png]
//! [--html report.html]`.
use crate::report::{expand_run_dirs, load_runs, Comparison, Format};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

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

pub fn run(args: CompareArgs) -> Result<()> {
    if let Some(p) = &args.plot {
        crate::report::plot::plot_format(p)?;
    }
    let runs = load_runs(&expand_run_dirs(&args.runs)?)?;
    let cmp = Comparison::new(&runs, args.target);
    print!("{}", cmp.render(args.format));
    if let Some(p) = &args.plot {
        cmp.plot(p)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &args.html {
        crate::fsutil::write_atomic(p, cmp.html()?.as_bytes())?;
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
