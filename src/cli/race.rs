//! `speedrun race`: train every contestant × seed from shared initial weights, then compare.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::train::{DeviceArgs, PresetArgs};
use crate::train::race::{parse_contestants, Race};

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
    /// Seeds 0..N; each seed gets its own shared initial weights.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Output directory holding one run directory per optimizer × seed.
    #[arg(long, default_value = "runs/race")]
    pub out: PathBuf,
    /// Where to write the comparison plot (default OUT/race.svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    #[arg(long)]
    pub no_progress: bool,
}

pub fn run(a: RaceArgs) -> Result<()> {
    if let Some(p) = &a.plot {
        // Bad input is refused before any training.
        crate::report::plot::plot_format(p)?;
    }
    crate::train::signals::install()?;
    let race = Race {
        preset: a.preset.preset().to_string(),
        sets: a.preset.sets.clone(),
        data_root: a.preset.data_dir.clone(),
        contestants: parse_contestants(&a.specs)?,
        seeds: a.seeds,
        out: a.out.clone(),
    };
    let exec = a.dev.resolve()?;
    let dirs = race.run(&exec, super::train::show_progress(a.no_progress))?;
    let plot = a.plot.unwrap_or_else(|| a.out.join("race.svg"));
    crate::report::race_report(&dirs, &plot)
}
