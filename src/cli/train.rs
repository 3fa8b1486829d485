//! `speedrun train`, and the config and device options every run-building command shares.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::device::Exec;
use crate::train::config::{self, Config, DEFAULT_PRESET};
use crate::train::run_dir::check_name;
use crate::train::signals;
use crate::train::trainer::{self, Resume, RunOptions};

/// The preset and its overrides: what every command that builds a run config shares.
#[derive(Debug, Clone, Args)]
pub struct PresetArgs {
    /// Preset name (configs/NAME.toml or built in) or a TOML file [default: shakespeare-tiny;
    /// with --resume: the run's own config.toml].
    #[arg(long, short = 'c')]
    pub config: Option<String>,
    /// Override any config field, e.g. --set train.steps=200 --set optim.muon.lr=0.0005 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Where relative data paths of the config start [default: $SPEEDRUN_DATA, else the current
    /// directory; the default preset's shards are also built in].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl PresetArgs {
    /// The preset named by `-c`, or the default one.
    pub fn preset(&self) -> &str {
        self.config.as_deref().unwrap_or(DEFAULT_PRESET)
    }

    /// Load `preset` with `sets` and then this command's own `--set`s, and its data root.
    pub fn load(&self, preset: &str, mut sets: Vec<String>) -> Result<Config> {
        sets.extend(self.sets.iter().cloned());
        let mut cfg = config::load(preset, &sets)?;
        cfg.data_root = self.data_dir.clone();
        Ok(cfg)
    }
}

/// The preset plus the method and seed of one run.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub preset: PresetArgs,
    /// Optimizer (sets optim.name).
    #[arg(long, value_enum)]
    pub optim: Option<crate::optim::Method>,
    /// Seed of the weight init (sets `seed`; TOML integers are 64-bit signed).
    #[arg(long, value_parser = clap::value_parser!(u64).range(..=i64::MAX as u64))]
    pub seed: Option<u64>,
}

impl ConfigArgs {
    /// The config of the preset (`-c` or the default) with `--optim`, `--seed` and `--set`.
    pub fn resolve(&self) -> Result<Config> {
        self.resolve_from(self.preset.preset())
    }

    /// The preset with `--optim` and `--seed` but without the `--set`s (what names a run).
    pub fn resolve_unset(&self) -> Result<Config> {
        let mut bare = self.clone();
        bare.preset.sets.clear();
        bare.resolve()
    }

    /// The same overrides on top of another preset or config file.
    pub fn resolve_from(&self, preset: &str) -> Result<Config> {
        let mut sets = Vec::new();
        if let Some(o) = &self.optim {
            sets.push(format!("optim.name=\"{o}\""));
        }
        if let Some(s) = self.seed {
            sets.push(format!("seed={s}"));
        }
        self.preset.load(preset, sets)
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
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// Stop with a checkpoint after this many steps (resume later with --resume).
    #[arg(long, value_name = "STEP")]
    pub stop_after: Option<usize>,
    /// No progress bar (plain log lines only).
    #[arg(long)]
    pub no_progress: bool,
}

pub fn run_train(a: TrainArgs) -> Result<()> {
    signals::install()?;
    let resume = match a.resume.as_deref() {
        None => Resume::No,
        Some("latest") => Resume::Latest,
        Some(p) => Resume::Path(PathBuf::from(p)),
    };
    // Every process of a data-parallel run reads the same flags and files, so a bad config is
    // met by all of them alike: rank 0 reports it, no process is aborted.
    let (cfg, run_dir) = resolve_config(&a, &resume)
        .map_err(|e| crate::train::dist::Everywhere(format!("{e:#}")))?;
    let exec = resume_precision(&a.dev, &resume, &run_dir)?;
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

/// The run's config and directory. A resume without -c continues the run with the config it was
/// started with; the --set overrides then apply to that config, not to the default preset.
fn resolve_config(a: &TrainArgs, resume: &Resume) -> Result<(Config, PathBuf)> {
    let own_config = *resume != Resume::No && a.cfg.preset.config.is_none();
    let name = match &a.name {
        Some(n) => n.clone(),
        None if own_config => trainer::default_run_name(&a.cfg.resolve_unset()?),
        None => trainer::default_run_name(&a.cfg.resolve()?),
    };
    check_name(&name).with_context(|| match &a.name {
        Some(_) => "--name".to_string(),
        None => "the default run name (<preset name>-<optim>-s<seed>); pass --name".to_string(),
    })?;
    let run_dir = a.runs_dir.join(&name);
    let saved = run_config(resume, &run_dir).filter(|p| own_config && p.is_file());
    let cfg = match saved {
        Some(saved) => a.cfg.resolve_from(&saved.display().to_string())?,
        None => a.cfg.resolve()?,
    };
    Ok((cfg, run_dir))
}

/// The device policy of a run. A resume keeps the precision the run was trained in
/// (`meta.json`): by default, and by refusing another `--precision`.
fn resume_precision(dev: &DeviceArgs, resume: &Resume, run_dir: &Path) -> Result<Exec> {
    let run = match resume {
        Resume::No => return dev.resolve(),
        Resume::Latest => run_dir.to_path_buf(),
        Resume::Path(ckpt) => match ckpt.parent().and_then(Path::parent) {
            Some(r) => r.to_path_buf(),
            None => return dev.resolve(),
        },
    };
    let trained = std::fs::read_to_string(run.join("meta.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<crate::train::run_dir::Meta>(&t).ok())
        .map(|m| m.precision)
        .filter(|p| !p.is_empty());
    let Some(trained) = trained else {
        return dev.resolve();
    };
    match &dev.precision {
        None => Exec::resolve(&dev.device, Some(&trained), dev.val_bf16),
        Some(_) => {
            let exec = dev.resolve()?;
            if exec.precision() != trained {
                anyhow::bail!(
                    "--precision {}: {} was trained in {trained}, and a resume keeps it (leave --precision out)",
                    exec.precision(),
                    run.display()
                );
            }
            Ok(exec)
        }
    }
}

/// The config.toml of the run a resume continues: the run directory's own, or the one of the run
/// that holds the given checkpoint (`RUN/checkpoints/step_N`).
fn run_config(resume: &Resume, run_dir: &Path) -> Option<PathBuf> {
    match resume {
        Resume::No => None,
        Resume::Latest => Some(run_dir.join("config.toml")),
        Resume::Path(ckpt) => crate::train::checkpoint::run_config_of(ckpt),
    }
}

/// A progress bar unless `--no-progress` or stderr is not a terminal.
pub fn show_progress(no_progress: bool) -> bool {
    !no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr())
}
