//! How a run starts: fresh, from `--init-from` weights, or from a checkpoint; and the run
//! directory's files written once everything it needs has loaded.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::checkpoint::{self, TrainState};
use super::config::Config;
use super::config::LoaderKind;
use super::data_root;
use super::dist;
use super::lock::RunLock;
use super::log::JsonlLog;
use super::resume;
use super::run_dir::{self, Meta};
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
        Resume::No => None,
        Resume::Latest => {
            checkpoint::newest_intact(run_dir, |dir| checkpoint::load(dir, &exec.device))?
        }
        Resume::Path(p) => Some((p.clone(), checkpoint::load(p, &exec.device)?)),
    };
    if let Some((dir, loaded)) = checkpoint {
        return from_checkpoint(cfg, opts, dir, loaded);
    }
    // A `--resume` that finds no checkpoint starts the run over.
    if dist::is_root() {
        run_dir::check_fresh(run_dir, opts.resume != Resume::No)?;
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
        bail!("{}", config_mismatch(cfg, &dir, &loaded.state.config_hash));
    }
    let model = Gpt::from_safetensors(&cfg.model, &loaded.model_path(), &exec.device)?;
    let mut state = loaded.state;
    state
        .progress
        .assume_val_step(cfg.train.val_every, cfg.train.steps);
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
        state: Some(state),
        from: Some(dir),
    })
}

/// Create and lock the run directory, clear what a dead writer left, write `config.toml` and
/// `meta.json`, and open `log.jsonl`: made what the resume continues when resuming
/// ([`resume::prepare_log`]), started over when a `--resume` finds no checkpoint.
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
    if resumed.is_none() {
        run_dir::check_contents(run_dir, opts.resume != Resume::No)?;
    }
    checkpoint::remove_stale_temps(run_dir)?;
    let log_path = run_dir.join("log.jsonl");
    match resumed {
        Some(st) => {
            let tokens = Geometry::of(cfg)?.tokens_at(st.progress.step);
            resume::prepare_log(&log_path, &st.progress, tokens)?
        }
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

/// Why a checkpoint (whose config hashed to `want`) does not fit `cfg`: the fields that differ
/// from the config of the run that wrote it (`config.toml` two levels up) and how to resume with
/// that config; or, when that file is gone or was edited since, so that the run's config is no
/// longer known, the command the run was started with (`meta.json`).
fn config_mismatch(cfg: &Config, ckpt: &Path, want: &str) -> String {
    let run = ckpt
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let saved = run.join("config.toml");
    let started = std::fs::read_to_string(run.join("meta.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Meta>(&t).ok())
        .filter(|m| !m.command.is_empty())
        .map(|m| format!("; it was started with `{}`", m.command))
        .unwrap_or_default();
    let (ck, sv) = (ckpt.display(), saved.display());
    match super::config::from_toml_file(&saved) {
        Ok(theirs) if theirs.resume_hash() == want => format!(
            "{ck}: written with a different config (differs in {}); resume with the run's own: -c {sv} (or drop the --set that changed it)",
            cfg.differing_fields(&theirs).join(", ")
        ),
        Ok(_) => format!(
            "{ck}: {sv} no longer matches the run's checkpoints (edited after the run started?); restore it, or pass the -c and --set the run was started with{started}"
        ),
        Err(_) if !saved.exists() => format!(
            "{ck}: {sv} is missing, so the run's config is unknown; restore it, or pass the -c and --set the run was started with{started}"
        ),
        Err(e) => format!(
            "{ck}: {sv} does not parse ({}); restore it, or pass the -c and --set the run was started with{started}",
            crate::fsutil::shorten(&crate::error_line(&e), 200)
        ),
    }
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
    let root = data_root::data_root(cfg.data_root.as_deref())?;
    let path = data_root::resolve(pattern, &root)?;
    let (t, vocab) = (cfg.model.seq_len, cfg.model.vocab_size);
    let open = || -> Result<Loader> {
        let loader = Loader::new(&path, batch, t, ranks, vocab)?;
        // Every shard's ids now, not when training reaches it.
        crate::data::shard::check_vocab_all(loader.files(), vocab)?;
        Ok(loader)
    };
    open().with_context(|| {
        format!(
            "{which} data {pattern} (data root {}: set --data-dir or ${})",
            root.display(),
            data_root::DATA_ENV
        )
    })
}
