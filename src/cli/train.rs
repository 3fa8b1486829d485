//! `speedrun train`, and the config and device options every run-building command shares.

use std::path::PathBuf;

use crate::device::Exec;
use anyhow::Result;
use clap::Args;

use crate::train::config::{self, Config, DEFAULT_PRESET};
use crate::train::trainer::{self, Resume, RunOptions};

/// The preset and its overrides: what every command that builds a run config shares.
#[derive(Debug, Clone, Args)]
pub struct PresetArgs {
    /// Preset name (configs/NAME.toml or built in) or a TOML file.
    #[arg(long, short = 'c', default_value = DEFAULT_PRESET)]
    pub config: String,
    /// Override any config field, e.g. --set train.steps=200 --set optim.muon.lr=0.0005 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

/// The preset plus the method and seed of one run.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub preset: PresetArgs,
    /// Optimizer (sets optim.name).
    #[arg(long, value_enum)]
    pub optim: Option<crate::optim::Method>,
    /// Seed of the weight init (sets `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl ConfigArgs {
    pub fn resolve(&self) -> Result<Config> {
        let mut sets = Vec::new();
        if let Some(o) = &self.optim {
            sets.push(format!("optim.name=\"{o}\""));
        }
        if let Some(s) = self.seed {
            sets.push(format!("seed={s}"));
        }
        sets.extend(self.preset.sets.iter().cloned());
        config::load(&self.preset.config, &sets)
    }
}

/// Options for the device and precision.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Forward/backward precision: fp32, or bf16 (default: bf16 on CUDA, fp32 on CPU).
    #[arg(long)]
    pub precision: Option<String>,
    /// Validate in bf16 instead of fp32 (record 4 validates in fp32).
    #[arg(long)]
    pub val_bf16: bool,
}

impl DeviceArgs {
    pub fn resolve(&self) -> Result<Exec> {
        Exec::resolve(&self.device, self.precision.as_deref(), self.val_bf16)
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub cfg: ConfigArgs,
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Run name (directory under --runs-dir); default <preset>-<optim>-s<seed>.
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Resume from the newest checkpoint of the run, or from the given checkpoint directory.
    #[arg(long, num_args = 0..=1, default_missing_value = "latest", value_name = "CHECKPOINT")]
    pub resume: Option<String>,
    /// Start from these weights (written by `speedrun init`) instead of a fresh init.
    #[arg(long, value_name = "FILE")]
    pub init_from: Option<PathBuf>,
    /// Stop with a checkpoint after this many steps (resume later with --resume).
    #[arg(long, value_name = "STEP")]
    pub stop_after: Option<usize>,
    /// No progress bar (plain log lines only).
    #[arg(long)]
    pub no_progress: bool,
}

pub fn run_train(a: TrainArgs) -> Result<()> {
    let cfg = a.cfg.resolve()?;
    let exec = a.dev.resolve()?;
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| trainer::default_run_name(&cfg));
    let run_dir = a.runs_dir.join(&name);
    let resume = match a.resume.as_deref() {
        None => Resume::No,
        Some("latest") => Resume::Latest,
        Some(p) => Resume::Path(PathBuf::from(p)),
    };
    let opts = RunOptions {
        run_dir,
        exec,
        resume,
        init_from: a.init_from.clone(),
        stop_after: a.stop_after,
        progress_bar: show_progress(a.no_progress),
    };
    trainer::train(&cfg, &opts)?;
    Ok(())
}

/// A progress bar unless `--no-progress` or stderr is not a terminal.
pub fn show_progress(no_progress: bool) -> bool {
    !no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr())
}
