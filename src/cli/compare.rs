//! `speedrun compare RUN… [--target X] [--format markdown|csv|json] [--plot out.svg|out.png]
//! [--html report.html] [--x step|tokens|time] [--log-y] [--smooth W] [--watch [SECS]]`.
use crate::report::plot::{PlotOpts, DEFAULT_SMOOTH};
use crate::report::watch::{watch, ReportSpec};
use crate::report::{Format, XAxis};
use anyhow::Result;
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Run directories (`runs/<name>`), modded-nanogpt text logs (`data/records/*.txt`), globs
    /// (`'runs/muon_*'`, expanded here when the shell did not) or directories of runs (`runs/`).
    #[arg(required = true)]
    pub runs: Vec<String>,
    /// Target val loss; overrides each run's own `train.target_loss` (steps/tokens/time to target
    /// are recomputed from the val records).
    #[arg(long, value_parser = parse_target)]
    pub target: Option<f64>,
    /// Table format written to stdout.
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    pub format: Format,
    /// Write the plot here (`.svg` or `.png`): val loss and train loss, seeds as mean ± sd.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write a self-contained interactive HTML report here (works offline).
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// The x axis of the plot (and the page's first view): optimizer steps, training tokens or
    /// the record-4 train clock.
    #[arg(long, value_enum, default_value_t = XAxis::Step)]
    pub x: XAxis,
    /// Log-scale the loss axes.
    #[arg(long)]
    pub log_y: bool,
    /// EMA weight of the smoothed train loss, in [0, 1) (0: no smoothing).
    #[arg(long, default_value_t = DEFAULT_SMOOTH, value_parser = parse_smooth)]
    pub smooth: f64,
    /// Redraw the table and rewrite --plot/--html every SECS seconds (default 10) as the runs
    /// progress, until Ctrl-C.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "10",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub watch: Option<u64>,
    /// The one argument is a race directory (`speedrun race --out`): rebuild its report
    /// (report.md, report.html, the plots) from its runs and print it (json: its numbers).
    #[arg(long)]
    pub race: bool,
}

fn parse_target(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() => Ok(t),
        _ => Err(format!("{s:?} is not a finite number")),
    }
}

fn parse_smooth(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(w) if (0.0..1.0).contains(&w) => Ok(w),
        _ => Err(format!("{s:?} is not a weight in [0, 1)")),
    }
}

/// `compare --race OUT`: the race's own report, rebuilt from its run directories.
fn race_report(args: &CompareArgs) -> Result<()> {
    let [dir] = args.runs.as_slice() else {
        anyhow::bail!("--race takes one race directory, not {}", args.runs.len());
    };
    if args.target.is_some() || args.html.is_some() || args.watch.is_some() {
        anyhow::bail!(
            "--race rebuilds the race's own report: --target, --html and --watch do not apply"
        );
    }
    let dir = std::path::Path::new(dir);
    match args.format {
        Format::Json => print!("{}", crate::report::race::report_json(dir)?),
        _ => print!(
            "{}",
            crate::report::race::write_report(dir, args.plot.as_deref())?
        ),
    }
    Ok(())
}

pub fn run(args: CompareArgs) -> Result<()> {
    if args.race {
        return race_report(&args);
    }
    let spec = ReportSpec {
        runs: args.runs,
        target: args.target,
        format: args.format,
        plot: args.plot,
        html: args.html,
        plot_opts: PlotOpts {
            x: args.x,
            log_y: args.log_y,
            smooth: args.smooth,
        },
    };
    spec.check()?;
    if let Some(secs) = args.watch {
        let mut out = std::io::stdout();
        let clear = out.is_terminal();
        return watch(
            &spec,
            Duration::from_secs(secs),
            &mut out,
            clear,
            None,
            std::thread::sleep,
        );
    }
    print!("{}", spec.run_once(None)?);
    for p in spec.outputs() {
        crate::out::err_line(&format!("wrote {}", p.display()));
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

impl clap::ValueEnum for XAxis {
    fn value_variants<'a>() -> &'a [Self] {
        &XAxis::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}
