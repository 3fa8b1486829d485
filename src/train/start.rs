//! How a run starts: fresh, from `--init-from` weights, or from a checkpoint; and the run
//! directory's files written once everything it needs has loaded.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::checkpoint::{self, TrainState};
use super::config::Config;
use super::config::LoaderKind;
use super::data_root;
use super::dist;
use super::log::JsonlLog;
use super::run_dir::{self, Meta, RunLock};
use super::step::Geometry;
use crate::data::Loader;
use crate::device::Exec;
use crate::model::Gpt;
use crate::optim::{self, OptimizerSet};

/// Where a run starts from.
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// Start fresh; the run directory must not hold an earlier run.
    No,
    /// Newest complete checkpoint of the run directory (fresh start when there is none).
    Latest,
    /// A given checkpoint directory.
    Path(PathBuf),
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub run_dir: PathBuf,
    pub exec: Exec,
    pub resume: Resume,
    pub init_from: Option<PathBuf>,
    /// Stop (with a checkpoint) once this many steps are done; the run stays resumable.
    pub stop_after: Option<usize>,
    pub progress_bar: bool,
}

/// The loaded starting point of a run.
pub struct Start {
    pub model: Gpt,
    pub opt: OptimizerSet,
    /// The checkpoint's state when resuming.
    pub state: Option<TrainState>,
    /// The checkpoint resumed from.
    pub from: Option<PathBuf>,
}

/// Load the model and optimizer the run starts from (nothing is written yet). `--resume` takes
/// the newest checkpoint that loads intact: a damaged one (bad checksum, unreadable file) is
/// passed over with a warning for the one before it.
pub fn resolve(cfg: &Config, opts: &RunOptions) -> Result<Start> {
    let run_dir = &opts.run_dir;
    let exec = &opts.exec;
    let checkpoint = match &opts.resume {
        Resume::No => {
            if run_dir.join("log.jsonl").exists() {
                bail!(
                    "{}: holds an earlier run; pass --resume to continue it or --name to start another",
                    run_dir.display()
                );
            }
            None
        }
        Resume::Latest => {
            checkpoint::newest_intact(run_dir, |dir| checkpoint::load(dir, &exec.device))?
        }
        Resume::Path(p) => Some((p.clone(), checkpoint::load(p, &exec.device)?)),
    };
    if let Some((dir, loaded)) = checkpoint {
        return from_checkpoint(cfg, opts, dir, loaded);
    }
    let model = match &opts.init_from {
        Some(p) => Gpt::from_safetensors(&cfg.model, p, &exec.device)?,
        None => Gpt::new(&cfg.model, &exec.device, cfg.seed)?,
    };
    let opt = optim::build(&cfg.optim, model.vars(), exec.ns_dtype)?;
    Ok(Start {
        model,
        opt,
        state: None,
        from: None,
    })
}

fn from_checkpoint(
    cfg: &Config,
    opts: &RunOptions,
    dir: PathBuf,
    loaded: checkpoint::Loaded,
) -> Result<Start> {
    let exec = &opts.exec;
    if loaded.state.config_hash != cfg.resume_hash() {
        bail!("{}", config_mismatch(cfg, &dir));
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

/// Create and lock the run directory, clear what a dead writer left, write `config.toml` and
/// `meta.json`, and open `log.jsonl`: cut back to the checkpoint's step when resuming, started
/// over when a `--resume` finds no checkpoint.
pub fn prepare_run_dir(
    cfg: &Config,
    opts: &RunOptions,
    resumed: Option<&TrainState>,
) -> Result<(JsonlLog, Option<RunLock>)> {
    if !dist::is_root() {
        // Rank 0 alone writes the run directory.
        return Ok((JsonlLog::disabled(), None));
    }
    let run_dir = &opts.run_dir;
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("{}: cannot create run dir", run_dir.display()))?;
    let lock = RunLock::acquire(run_dir)?;
    checkpoint::remove_stale_temps(run_dir)?;
    let log_path = run_dir.join("log.jsonl");
    match resumed {
        Some(st) => run_dir::truncate_log(&log_path, st.progress.step)?,
        None if log_path.exists() => std::fs::remove_file(&log_path)
            .with_context(|| format!("{}: cannot remove", log_path.display()))?,
        None => {}
    }
    crate::fsutil::write_atomic(&run_dir.join("config.toml"), cfg.to_toml()?.as_bytes())?;
    let device = crate::device::describe(&opts.exec.device);
    let mut meta = Meta::new(device, opts.exec.precision().to_string());
    meta.world_size = dist::size();
    crate::fsutil::write_json(&run_dir.join("meta.json"), &meta)?;
    Ok((JsonlLog::open(&log_path)?, Some(lock)))
}

/// Why a checkpoint does not fit `cfg`: the fields that differ from the config of the run that
/// wrote it (`config.toml` two levels up), and how to resume with that config instead.
fn config_mismatch(cfg: &Config, ckpt: &std::path::Path) -> String {
    let saved = checkpoint::run_config_of(ckpt).unwrap_or_else(|| "config.toml".into());
    let fields = match super::config::from_toml_file(&saved) {
        Ok(theirs) => {
            let d = cfg.differing_fields(&theirs);
            if d.is_empty() {
                "unknown fields".to_string()
            } else {
                d.join(", ")
            }
        }
        Err(_) => "unknown fields".to_string(),
    };
    format!(
        "{}: written with a different config (differs in {fields}); resume with the run's own: -c {} (or drop the --set that changed it)",
        ckpt.display(),
        saved.display()
    )
}

/// Check everything a run needs before anything is written: the config, its batch geometry, its
/// data and its sample prompt.
pub fn preflight(cfg: &Config) -> Result<()> {
    cfg.validate()?;
    dist::my_ranks(cfg.train.ranks)?;
    open_loaders(cfg, &Geometry::of(cfg)?)?;
    super::samples::RunSamples::new(cfg)?;
    Ok(())
}

/// The train and val loaders of `cfg`, and the validation steps of its budget, checked to fit
/// the val shards (a larger budget would silently read validation tokens twice).
pub(super) fn open_loaders(cfg: &Config, geo: &Geometry) -> Result<(Loader, Loader, usize)> {
    let train = match cfg.train.loader {
        LoaderKind::Record4 => {
            let calls = geo.rank_batch / geo.device_batch;
            let (pattern, ranks) = (&cfg.data.train, cfg.train.ranks);
            open_loader(cfg, "train", pattern, geo.device_batch, ranks)?
                .with_calls(calls)?
                .repeat_first_batch(cfg.train.repeat_first_batch)
        }
        LoaderKind::Track3 => {
            let ranks = cfg.train.ranks;
            open_loader(cfg, "train", &cfg.data.train, geo.rank_batch * ranks, 1)?
                .track3_generator(ranks)
                .with_context(|| format!("train data {}", cfg.data.train))?
        }
    };
    let (val, val_steps) =
        val_loader(cfg, &cfg.data.val, cfg.train.val_tokens, "train.val_tokens")?;
    Ok((train, val, val_steps))
}

/// A loader over the shards of `pattern` cut as validation cuts its val shards (one rank,
/// `train.val_micro_batch` sequences of `model.seq_len`), and the micro-batches that read
/// `tokens` of them (`what` names that budget in errors). `speedrun eval` scores with it.
pub fn val_loader(
    cfg: &Config,
    pattern: &str,
    tokens: usize,
    what: &str,
) -> Result<(Loader, usize)> {
    let val = open_loader(cfg, "val", pattern, cfg.train.val_batch(), 1)?;
    let steps = val
        .steps_for_tokens(tokens)
        .with_context(|| format!("{what} = {tokens}"))?;
    Ok((val, steps))
}

/// The loader of the `which` (train or val) shards `pattern` of `cfg`, `batch` sequences per
/// rank.
fn open_loader(
    cfg: &Config,
    which: &str,
    pattern: &str,
    batch: usize,
    ranks: usize,
) -> Result<Loader> {
    let root = data_root::data_root(cfg.data_root.as_deref());
    let path = data_root::resolve(pattern, &root)?;
    let (t, vocab) = (cfg.model.seq_len, cfg.model.vocab_size);
    Loader::new(&path, batch, t, ranks, vocab).with_context(|| {
        format!(
            "{which} data {pattern} (data root {}: set --data-dir or ${})",
            root.display(),
            data_root::DATA_ENV
        )
    })
}
