//! The weights a path names, for `speedrun sample` and `speedrun eval`: a run directory (its
//! newest intact checkpoint, as `--resume` picks it), one checkpoint directory, or a
//! `.safetensors` file. A run's own `config.toml` gives the model's shape; a file that belongs to
//! no run takes it from a preset (`-c`, `--set`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use candle_core::Device;

use super::checkpoint;
use super::config::{self, Config};
use crate::model::Gpt;

/// Resolved weights: where they are and the config of the run (or preset) they belong to.
#[derive(Debug, Clone)]
pub struct Weights {
    pub cfg: Config,
    /// The safetensors file of the weights.
    pub file: PathBuf,
    /// The step of the checkpoint (None for a bare file).
    pub step: Option<usize>,
    /// What to call them in output: the path given, and the checkpoint taken from a run.
    pub label: String,
}

impl Weights {
    /// Load the model on `device` (errors name the file and the tensor).
    pub fn load(&self, device: &Device) -> Result<Gpt> {
        Gpt::from_safetensors(&self.cfg.model, &self.file, device)
    }
}

/// What `path` names. `preset` gives the config of a bare weights file (`-c`/`--set`; `None`
/// when none was given); a run's own `config.toml` is used for anything inside a run, and a
/// preset given there is an error rather than silently ignored.
pub fn resolve(path: &Path, preset: Option<Result<Config>>) -> Result<Weights> {
    let shown = path.display().to_string();
    if !path.exists() {
        bail!("{shown}: no such run directory, checkpoint or weights file");
    }
    let run_cfg = |run: &Path| -> Result<Config> {
        if preset.is_some() {
            bail!("{shown}: -c/--set apply to a bare weights file; a run's checkpoints use its own config.toml");
        }
        let file = run.join("config.toml");
        if !file.is_file() {
            bail!(
                "{}: missing, so the model's shape is unknown (pass the .safetensors file with -c PRESET)",
                file.display()
            );
        }
        config::from_toml_file(&file)
    };
    if path.join("config.toml").is_file() || path.join("checkpoints").is_dir() {
        let cfg = run_cfg(path)?;
        let Some((dir, state)) = checkpoint::newest_intact(path, checkpoint::verify)? else {
            bail!("{shown}: the run has no checkpoint yet");
        };
        let step = state.progress.step;
        return Ok(Weights {
            cfg,
            file: dir.join("model.safetensors"),
            step: Some(step),
            label: format!("{shown} (step {step})"),
        });
    }
    if path.join("state.json").is_file() {
        let state = checkpoint::verify(path)?;
        let run = path
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new(""));
        return Ok(Weights {
            cfg: run_cfg(run)?,
            file: path.join("model.safetensors"),
            step: Some(state.progress.step),
            label: shown,
        });
    }
    if path.is_dir() {
        bail!("{shown}: not a run directory (no config.toml) nor a checkpoint (no state.json)");
    }
    // A file inside a checkpoint directory is that checkpoint, checksums included.
    let in_checkpoint = path.file_name() == Some("model.safetensors".as_ref());
    if let Some(dir) = path
        .parent()
        .filter(|d| in_checkpoint && d.join("state.json").is_file())
    {
        let mut w = resolve(dir, preset)?;
        w.label = shown;
        return Ok(w);
    }
    let cfg = match preset {
        Some(cfg) => cfg?,
        None => bail!(
            "{shown}: a weights file outside a run has no config; give its shape with -c PRESET (and --set model.…)"
        ),
    };
    Ok(Weights {
        cfg,
        file: path.to_path_buf(),
        step: None,
        label: shown,
    })
}
