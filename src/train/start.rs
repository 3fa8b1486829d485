//! How a run starts: fresh, from `--init-from` weights, or from a checkpoint; and the run
//! directory's files written once everything it needs has loaded.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::checkpoint::{self, TrainState};
use super::config::Config;
use super::log::JsonlLog;
use super::run_dir::{self, Meta};
use super::trainer::{Resume, RunOptions};
use crate::model::Gpt;
use crate::optim::{self, OptimizerSet};

/// The loaded starting point of a run.
pub struct Start {
    pub model: Gpt,
    pub opt: OptimizerSet,
    /// The checkpoint's state when resuming.
    pub state: Option<TrainState>,
    /// The checkpoint resumed from.
    pub from: Option<PathBuf>,
}

/// Load the model and optimizer the run starts from (nothing is written yet).
pub fn resolve(cfg: &Config, opts: &RunOptions) -> Result<Start> {
    let run_dir = &opts.run_dir;
    let from = match &opts.resume {
        Resume::No => {
            if run_dir.join("log.jsonl").exists() {
                bail!(
                    "{}: holds an earlier run; pass --resume to continue it or --name to start another",
                    run_dir.display()
                );
            }
            None
        }
        Resume::Latest => checkpoint::latest(run_dir)?,
        Resume::Path(p) => Some(p.clone()),
    };
    let exec = &opts.exec;
    let Some(dir) = from else {
        let model = match &opts.init_from {
            Some(p) => Gpt::from_safetensors(&cfg.model, p, &exec.device)?,
            None => Gpt::new(&cfg.model, &exec.device, cfg.seed)?,
        };
        let opt = optim::build(&cfg.optim, model.vars(), exec.ns_dtype)?;
        return Ok(Start {
            model,
            opt,
            state: None,
            from: None,
        });
    };
    let loaded = checkpoint::load(&dir, &exec.device)?;
    if loaded.state.config_hash != cfg.resume_hash() {
        bail!(
            "{}: written with a different config (hash {} vs {}); resume with the run's own config.toml",
            dir.display(),
            loaded.state.config_hash,
            cfg.resume_hash()
        );
    }
    let model = Gpt::from_safetensors(&cfg.model, &loaded.model_path(), &exec.device)?;
    let mut opt = optim::build(&cfg.optim, model.vars(), exec.ns_dtype)?;
    opt.load_state(&loaded.optim).with_context(|| {
        format!(
            "{}: optimizer state",
            dir.join("optim.safetensors").display()
        )
    })?;
    Ok(Start {
        model,
        opt,
        state: Some(loaded.state),
        from: Some(dir),
    })
}

/// Create the run directory, write `config.toml` and `meta.json`, and open `log.jsonl`: cut back
/// to the checkpoint's step when resuming, started over when a `--resume` finds no checkpoint.
pub fn prepare_run_dir(
    cfg: &Config,
    opts: &RunOptions,
    resumed: Option<&TrainState>,
) -> Result<JsonlLog> {
    let run_dir = &opts.run_dir;
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("{}: cannot create run dir", run_dir.display()))?;
    let log_path = run_dir.join("log.jsonl");
    match resumed {
        Some(st) => run_dir::truncate_log(&log_path, st.progress.step)?,
        None if log_path.exists() => std::fs::remove_file(&log_path)
            .with_context(|| format!("{}: cannot remove", log_path.display()))?,
        None => {}
    }
    crate::fsutil::write_atomic(&run_dir.join("config.toml"), cfg.to_toml()?.as_bytes())?;
    let device = crate::device::describe(&opts.exec.device);
    let meta = Meta::new(device, opts.exec.precision().to_string());
    crate::fsutil::write_json(&run_dir.join("meta.json"), &meta)?;
    JsonlLog::open(&log_path)
}
