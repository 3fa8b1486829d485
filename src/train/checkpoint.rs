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

/// Bumped whenever the checkpoint layout changes. Version 3 added `val_step` (a checkpoint may
/// now be written before its step's validation, which an older reader would skip) and the
/// checksum of `state.json` itself; version 2 added the file checksums; versions 1 and 2 still
/// load.
pub const FORMAT_VERSION: u32 = 3;

/// The key of `state.json`'s own checksum.
const STATE_SUM: &str = "state_sha256";

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
    write_json(&tmp.join("state.json"), &with_state_sum(&state)?)?;

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

/// `state` as JSON with [`STATE_SUM`]: the SHA-256 of its other fields, so that an edited step
/// or clock is caught as the flipped byte of a tensor file is.
fn with_state_sum(state: &TrainState) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(state)?;
    let sum = state_sum(&v);
    if let serde_json::Value::Object(m) = &mut v {
        m.insert(STATE_SUM.to_string(), sum.into());
    }
    Ok(v)
}

/// SHA-256 (hex) of a state's JSON without its [`STATE_SUM`] field, keys in sorted order.
fn state_sum(v: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let mut v = v.clone();
    if let serde_json::Value::Object(m) = &mut v {
        m.remove(STATE_SUM);
    }
    // serde_json's map is ordered by key (no `preserve_order`), so this text is canonical.
    hex(&Sha256::digest(v.to_string().as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Check a loaded `state.json` against its own checksum (version 3 on) and against the name of
/// its directory (`step_N` must hold step N).
fn check_state(dir: &Path, path: &Path, v: &serde_json::Value, state: &TrainState) -> Result<()> {
    match v.get(STATE_SUM).and_then(|s| s.as_str()) {
        Some(want) => {
            let got = state_sum(v);
            if got != want {
                bail!(
                    "{}: checksum mismatch (the file says {want}, its fields hash to {got}): edited or damaged",
                    path.display()
                );
            }
        }
        // Written by every version-3 save: without it the file was damaged (a flipped bit in
        // the key's name would otherwise switch the check off).
        None if state.format_version >= 3 => bail!(
            "{}: no {STATE_SUM}, which format version {} always writes: edited or damaged",
            path.display(),
            state.format_version
        ),
        None => {}
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let named = name
        .as_deref()
        .and_then(|n| n.strip_prefix("step_"))
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(n) = named.filter(|&n| n != state.progress.step) {
        bail!(
            "{}: says step {} but its directory is step_{n:06}: edited or moved",
            path.display(),
            state.progress.step
        );
    }
    Ok(())
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
            // A directory, or a stray file of that name: neither is ever a checkpoint.
            let removed = match e.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            removed
                .with_context(|| format!("{}: cannot remove stale temporary", path.display()))?;
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
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{}: malformed state: {e}", state_path.display()))?;
    let state: TrainState = serde_json::from_value(value.clone())
        .map_err(|e| anyhow!("{}: malformed state: {e}", state_path.display()))?;
    if !(1..=FORMAT_VERSION).contains(&state.format_version) {
        bail!(
            "{}: checkpoint format version {} is not supported (this build reads 1 to {})",
            state_path.display(),
            state.format_version,
            FORMAT_VERSION
        );
    }
    check_state(dir, &state_path, &value, &state)?;
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
                let e = crate::error_line(&e);
                crate::out::err_line(&format!("warning: {e}; using the checkpoint before it"));
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
    Ok(hex(&h.finalize()))
}

fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device)
        .map_err(|e| anyhow!("{}: cannot read safetensors: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state whose floats serde_json's default parser reads one ulp off (10.848207950592041
    /// came back as the f64 before it): with `float_roundtrip` they come back exactly, so the
    /// state's checksum holds and a resume restores the very val loss the run logged.
    #[test]
    fn state_floats_and_checksum_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("step_000006");
        fs::create_dir(&ckpt).unwrap();
        let loss = 10.848207950592041_f64;
        let state = TrainState {
            format_version: FORMAT_VERSION,
            progress: Progress {
                step: 6,
                train_time_ms: 1234.567891011,
                last_val_loss: Some(loss),
                val_step: Some(6),
                ..Progress::default()
            },
            train_loader: LoaderPos {
                ranks: Vec::new(),
                epoch: 0,
                repeat_pending: true,
            },
            seed: 0,
            config_hash: "x".into(),
            files: BTreeMap::new(),
        };
        let path = ckpt.join("state.json");
        write_json(&path, &with_state_sum(&state).unwrap()).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let back: TrainState = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            back.progress.last_val_loss.unwrap().to_bits(),
            loss.to_bits()
        );
        assert_eq!(back, state);
        check_state(&ckpt, &path, &v, &back).unwrap();
        // An edited field is caught by the checksum, a moved directory by its name.
        let edited = fs::read_to_string(&path)
            .unwrap()
            .replace("1234.567891011", "1.0");
        let v2: serde_json::Value = serde_json::from_str(&edited).unwrap();
        let s2: TrainState = serde_json::from_value(v2.clone()).unwrap();
        let e = check_state(&ckpt, &path, &v2, &s2).unwrap_err().to_string();
        assert!(e.contains("edited or damaged"), "{e}");
        let e = check_state(&dir.path().join("step_000007"), &path, &v, &back).unwrap_err();
        assert!(e
            .to_string()
            .contains("says step 6 but its directory is step_000007"));
    }
}
