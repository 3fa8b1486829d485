//! Checkpoints: `runs/<name>/checkpoints/step_XXXXXX/{model.safetensors, optim.safetensors, state.json}`.
//!
//! Written atomically: everything goes into a hidden temporary directory, every file and the directory
//! are fsynced, then the directory is renamed into place and the parent fsynced. `state.json` is written
//! last, so a directory without it is never taken as complete. Older checkpoints are deleted only after
//! the new one is in place, so the last good checkpoint always survives a crash.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::progress::Progress;
use crate::data::LoaderPos;
use crate::fsutil::{sync_dir, write_atomic_with, write_json};

/// Bumped whenever the checkpoint layout changes. Version 2 added the file checksums; version 1
/// checkpoints (no checksums) still load.
pub const FORMAT_VERSION: u32 = 2;

/// The tensor files of a checkpoint, each with a SHA-256 in `state.json`.
const TENSOR_FILES: [&str; 2] = ["model.safetensors", "optim.safetensors"];

/// Everything besides tensors that a resume needs (`state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub format_version: u32,
    /// Step, clock, target and last val loss, as flat fields.
    #[serde(flatten)]
    pub progress: Progress,
    /// Where the train loader stands (the next window it will read).
    pub train_loader: LoaderPos,
    /// Seed of the weight init. Training itself draws no random numbers (no dropout, fixed data
    /// order), so the seed is the whole RNG state.
    pub seed: u64,
    /// [`crate::train::config::Config::resume_hash`] of the run that wrote it.
    pub config_hash: String,
    /// SHA-256 (hex) of each tensor file, checked on load: a flipped byte is caught rather
    /// than trained on. Filled in by [`save`].
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// The `config.toml` of the run that wrote checkpoint `ckpt` (`RUN/checkpoints/step_N`).
pub fn run_config_of(ckpt: &Path) -> Option<PathBuf> {
    Some(ckpt.parent()?.parent()?.join("config.toml"))
}

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

fn step_dir_name(step: usize) -> String {
    format!("step_{step:06}")
}

/// Write a checkpoint for `state.progress.step` atomically and keep the newest `keep` complete ones.
pub fn save(
    run_dir: &Path,
    model_tensors: &[(String, Tensor)],
    optim_tensors: &[(String, Tensor)],
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf> {
    let root = checkpoints_dir(run_dir);
    fs::create_dir_all(&root).with_context(|| format!("{}: cannot create", root.display()))?;
    let name = step_dir_name(state.progress.step);
    let tmp = root.join(format!(".tmp_{name}_{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)
            .with_context(|| format!("{}: cannot remove stale temp dir", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;

    write_safetensors(&tmp.join(TENSOR_FILES[0]), model_tensors)?;
    write_safetensors(&tmp.join(TENSOR_FILES[1]), optim_tensors)?;
    let mut state = state.clone();
    for f in TENSOR_FILES {
        state
            .files
            .insert(f.to_string(), sha256_file(&tmp.join(f))?);
    }
    write_json(&tmp.join("state.json"), &state)?;

    let dst = root.join(&name);
    if dst.exists() {
        // Re-saving the same step (e.g. a resumed run ending where it started): replace it only now
        // that the new copy is complete.
        let old = root.join(format!(".old_{name}_{}", std::process::id()));
        fs::rename(&dst, &old).with_context(|| format!("{}: cannot move aside", dst.display()))?;
        fs::rename(&tmp, &dst)
            .with_context(|| format!("{}: cannot rename into place", dst.display()))?;
        let _ = fs::remove_dir_all(&old);
    } else {
        fs::rename(&tmp, &dst)
            .with_context(|| format!("{}: cannot rename into place", dst.display()))?;
    }
    sync_dir(&root);
    prune(&root, keep)?;
    Ok(dst)
}

/// Write `tensors` as safetensors, atomically (the checkpoint directory is renamed into place
/// as a whole afterwards; the per-file fsync is what makes that rename safe).
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors.iter().cloned().collect();
    write_atomic_with(path, |tmp| {
        candle_core::safetensors::save(&map, tmp)
            .with_context(|| format!("{}: cannot write", path.display()))
    })
}

/// Clean up after a writer that died mid-checkpoint: temporary `.tmp_*` directories are removed
/// (they are never complete), and a `.old_step_N_*` that was moved aside for a re-save of step N
/// is moved back when the new `step_N` never arrived (it is then the last good checkpoint).
/// Call only while holding the run's lock.
pub fn remove_stale_temps(run_dir: &Path) -> Result<()> {
    let root = checkpoints_dir(run_dir);
    let Ok(rd) = fs::read_dir(&root) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let path = e.path();
        if name.starts_with(".tmp_") {
            fs::remove_dir_all(&path)
                .with_context(|| format!("{}: cannot remove stale temp dir", path.display()))?;
        } else if let Some(rest) = name.strip_prefix(".old_") {
            // rest = step_NNNNNN_<pid>
            let step_name = rest.rsplit_once('_').map(|(s, _)| s).unwrap_or(rest);
            let dst = root.join(step_name);
            if dst.join("state.json").is_file() {
                fs::remove_dir_all(&path)
                    .with_context(|| format!("{}: cannot remove", path.display()))?;
            } else {
                let _ = fs::remove_dir_all(&dst);
                fs::rename(&path, &dst)
                    .with_context(|| format!("{}: cannot restore", dst.display()))?;
            }
        }
    }
    sync_dir(&root);
    Ok(())
}

/// Complete checkpoints under `root`, oldest first.
pub fn list(root: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(_) => return Ok(out),
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(n) = name.strip_prefix("step_") {
            if let Ok(step) = n.parse::<usize>() {
                if e.path().join("state.json").is_file() {
                    out.push((step, e.path()));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn prune(root: &Path, keep: usize) -> Result<()> {
    let all = list(root)?;
    let keep = keep.max(1);
    if all.len() > keep {
        for (_, p) in &all[..all.len() - keep] {
            fs::remove_dir_all(p)
                .with_context(|| format!("{}: cannot delete old checkpoint", p.display()))?;
        }
    }
    Ok(())
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list(&checkpoints_dir(run_dir))?.pop().map(|(_, p)| p))
}

/// A loaded checkpoint: its state and optimizer tensors (the weights are read by the model
/// loader from [`Loaded::model_path`], which checks them against the config).
pub struct Loaded {
    pub dir: PathBuf,
    pub state: TrainState,
    pub optim: HashMap<String, Tensor>,
}

impl Loaded {
    pub fn model_path(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }
}

/// Load a checkpoint directory (errors name the file and the problem).
pub fn load(dir: &Path, device: &Device) -> Result<Loaded> {
    let state = verify(dir)?;
    let optim = read_safetensors(&dir.join("optim.safetensors"), device)?;
    Ok(Loaded {
        dir: dir.to_path_buf(),
        state,
        optim,
    })
}

/// A checkpoint directory's `state.json`, after checking its format version and the checksum of
/// every tensor file it lists: what makes a checkpoint intact.
pub fn verify(dir: &Path) -> Result<TrainState> {
    let state_path = dir.join("state.json");
    let text = fs::read_to_string(&state_path).with_context(|| {
        format!(
            "{}: cannot read (not a complete checkpoint?)",
            state_path.display()
        )
    })?;
    let state: TrainState = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{}: malformed state: {e}", state_path.display()))?;
    if !(1..=FORMAT_VERSION).contains(&state.format_version) {
        bail!(
            "{}: checkpoint format version {} is not supported (this build reads 1 to {})",
            state_path.display(),
            state.format_version,
            FORMAT_VERSION
        );
    }
    for (file, want) in &state.files {
        let path = dir.join(file);
        let got = sha256_file(&path)?;
        if &got != want {
            bail!(
                "{}: checksum mismatch (state.json says {want}, the file hashes to {got}): the file is damaged",
                path.display()
            );
        }
    }
    Ok(state)
}

/// The newest checkpoint of `run_dir` that `open` accepts, with what it returned; `None` when the
/// run has no complete checkpoint. A checkpoint `open` rejects (a damaged file) is passed over
/// with a warning for the one before it; when every one is rejected, the oldest one's error is
/// returned. This is how `--resume` picks its checkpoint, and what `sample` and `eval` read.
pub fn newest_intact<T>(
    run_dir: &Path,
    mut open: impl FnMut(&Path) -> Result<T>,
) -> Result<Option<(PathBuf, T)>> {
    let mut all = list(&checkpoints_dir(run_dir))?;
    while let Some((_, dir)) = all.pop() {
        match open(&dir) {
            Ok(t) => return Ok(Some((dir, t))),
            Err(e) if !all.is_empty() => {
                let e = crate::one_line(&format!("{e:#}"));
                eprintln!("warning: {e}; using the checkpoint before it");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// SHA-256 of a file as lowercase hex, read in blocks.
fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("{}: read failed", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device)
        .map_err(|e| anyhow!("{}: cannot read safetensors: {e}", path.display()))
}
