//! `speedrun train` and `speedrun init`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::DType;
use clap::Args;

use super::config::{self, Config, DEFAULT_PRESET};
use super::trainer::{self, Resume, RunOptions};
use crate::model::Gpt;

/// Options shared by every command that builds a run config.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Preset name (configs/NAME.toml or built in) or a TOML file.
    #[arg(long, short = 'c', default_value = DEFAULT_PRESET)]
    pub config: String,
    /// Optimizer: adamw, muon, newton-muon, neon, neon-fstar (sets optim.name).
    #[arg(long)]
    pub optim: Option<String>,
    /// Seed of the weight init (sets `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override any config field, e.g. --set train.steps=200 --set optim.muon.lr=0.0005 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
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
        sets.extend(self.sets.iter().cloned());
        config::load(&self.config, &sets)
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
    pub fn resolve(&self) -> Result<(candle_core::Device, DType, DType)> {
        let device = crate::device::parse_device(&self.device)?;
        let compute = match &self.precision {
            Some(p) => crate::device::parse_precision(p)?,
            None if device.is_cuda() => DType::BF16,
            None => DType::F32,
        };
        let val = if self.val_bf16 {
            DType::BF16
        } else {
            DType::F32
        };
        Ok((device, compute, val))
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
    let (device, compute, val_compute) = a.dev.resolve()?;
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
        device,
        compute,
        val_compute,
        resume,
        init_from: a.init_from.clone(),
        stop_after: a.stop_after,
        progress_bar: !a.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    trainer::train(&cfg, &opts)?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// Where to write the initial weights (safetensors, PyTorch names).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run_init(a: InitArgs) -> Result<()> {
    let cfg = a.cfg.resolve()?;
    write_init_weights(&cfg, &a.out)?;
    println!(
        "wrote {} ({} parameters, seed {}, model {}x{}x{})",
        a.out.display(),
        cfg.model.num_params(),
        cfg.seed,
        cfg.model.n_layer,
        cfg.model.n_head,
        cfg.model.n_embd
    );
    Ok(())
}

/// Fresh weights for `cfg.seed` (drawn on the host, so identical for every device), written
/// atomically to `out` (temporary file, then rename), creating its directory.
pub fn write_init_weights(cfg: &Config, out: &Path) -> Result<()> {
    let model = Gpt::new(&cfg.model, &candle_core::Device::Cpu, cfg.seed)?;
    if let Some(parent) = out.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create", parent.display()))?;
        }
    }
    let tmp = out.with_extension("safetensors.tmp");
    model.save_safetensors(&tmp)?;
    std::fs::rename(&tmp, out)
        .with_context(|| format!("{}: cannot rename into place", out.display()))?;
    Ok(())
}
