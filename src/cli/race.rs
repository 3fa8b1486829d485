//! `speedrun race`: every contestant from shared initial weights, its lr (or any key) tuned on
//! seed 0 with `--tune`, then `--seeds` at each best point, then the report.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::train::{DeviceArgs, PresetArgs};
use crate::train::race::{parse_contestants, parse_tunes, Race, Runner};

#[derive(Debug, Args)]
pub struct RaceArgs {
    #[command(flatten)]
    pub preset: PresetArgs,
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Contestants: NAME[@LABEL][:KEY=VALUE[;KEY=VALUE…]], e.g. `muon`,
    /// `newton-muon@nm-lr3:optim.newton_muon.lr=0.003`. Repeatable; plain names may be comma-separated.
    #[arg(long = "optims", value_name = "SPEC", required = true)]
    pub specs: Vec<String>,
    /// Tune KEY over GRID on seed 0, e.g. `lr=0.25x,0.5x,1x,2x,4x`: `lr` is each method's own
    /// matrix lr (optim.<method>.lr), a bare name another field of the method's own table
    /// (`momentum`), a dotted name any config key; `0.5x` is half the contestant's own value, a
    /// plain number is used as it is. Repeatable: several make a grid.
    #[arg(long = "tune", value_name = "KEY=GRID")]
    pub tune: Vec<String>,
    /// How many times each grid may grow by one point where its best point lies on an edge.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub tune_extend: usize,
    /// Seeds 0..N at each contestant's best point; each seed gets its own shared initial weights.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Runs side by side, each its own single-threaded `speedrun train` process, with the same
    /// results as one at a time (1: one at a time, in this process, on every core).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Start each run's process under this command, split at spaces, e.g. `mpirun -np 2` (runs
    /// are then processes even with --jobs 1).
    #[arg(long, value_name = "CMD")]
    pub launcher: Option<String>,
    /// Output directory: one run directory per contestant × grid point × seed, race.json, the
    /// shared initial weights, and the report (report.md, report.html, race.png, tuning.png).
    #[arg(long, default_value = "runs/race")]
    pub out: PathBuf,
    /// Also write the race plot here (.svg or .png).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    #[arg(long)]
    pub no_progress: bool,
}

/// The `train` flags that give a run's process this race's device options.
fn device_flags(d: &DeviceArgs) -> Vec<String> {
    let mut f = vec!["--device".to_string(), d.device.clone()];
    if let Some(p) = &d.precision {
        f.extend(["--precision".to_string(), p.clone()]);
    }
    if d.val_bf16 {
        f.push("--val-bf16".into());
    }
    f
}

pub fn run(a: RaceArgs) -> Result<()> {
    // Bad input is refused before any training.
    if let Some(p) = &a.plot {
        crate::report::plot::plot_format(p)?;
        crate::report::plot::check_out_dir(p)?;
    }
    if a.jobs == 0 {
        bail!("--jobs 0: a race runs at least one run at a time");
    }
    let launcher: Vec<String> = a
        .launcher
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    if a.launcher.is_some() && launcher.is_empty() {
        bail!("--launcher: empty command");
    }
    let race = Race {
        preset: a.preset.preset().to_string(),
        sets: a.preset.sets.clone(),
        data_root: a.preset.data_dir.clone(),
        contestants: parse_contestants(&a.specs)?,
        tune: parse_tunes(&a.tune)?,
        extend: a.tune_extend,
        seeds: a.seeds,
        out: a.out.clone(),
    };
    crate::train::signals::install()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if a.jobs > cores {
        eprintln!(
            "warning: --jobs {} on {cores} cores: the runs will share cores (same results, slower)",
            a.jobs
        );
    }
    let runner = Runner {
        exec: a.dev.resolve()?,
        progress_bar: super::train::show_progress(a.no_progress),
        jobs: a.jobs,
        launcher,
        device_flags: device_flags(&a.dev),
    };
    let plan = race.run(&runner)?;
    let md = crate::report::race::write_report(&plan.out, a.plot.as_deref())?;
    crate::train::race::say!("{md}");
    crate::train::race::say!("report: {}", plan.out.join("report.md").display());
    crate::train::race::say!("        {}", plan.out.join("report.html").display());
    Ok(())
}
