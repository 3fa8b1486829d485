//! Where a config's data paths point. A relative path or glob in `[data]` is taken against the
//! data root: `--data-dir`, else `$SPEEDRUN_DATA`, else the current directory. The default
//! preset's shards are compiled into the binary as well, so `speedrun train` works from any
//! directory after `cargo install`: when they are not found under the root, the embedded copy is
//! written once to a cache directory (checked against the binary's bytes by SHA-256 at every use)
//! and read from there.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::data::resolve_pattern;

/// Environment variable naming the data root.
pub const DATA_ENV: &str = "SPEEDRUN_DATA";

/// The shards of the default preset (tinyshakespeare, see data/README.md), by their path in the
/// repository.
const EMBEDDED: &[(&str, &[u8])] = &[
    (
        "data/tinyshakespeare/tinyshakespeare_train_000001.bin",
        include_bytes!("../../data/tinyshakespeare/tinyshakespeare_train_000001.bin"),
    ),
    (
        "data/tinyshakespeare/tinyshakespeare_val_000000.bin",
        include_bytes!("../../data/tinyshakespeare/tinyshakespeare_val_000000.bin"),
    ),
];

/// The data root: `flag` (`--data-dir`), else `$SPEEDRUN_DATA`, else the current directory. A
/// root that is given must be a directory: a typo would otherwise fall back to the built-in
/// shards without a word.
pub fn data_root(flag: Option<&Path>) -> Result<PathBuf> {
    let (root, what) = match flag {
        Some(p) => (p.to_path_buf(), "--data-dir".to_string()),
        None => match std::env::var_os(DATA_ENV) {
            Some(v) if !v.is_empty() => (PathBuf::from(v), format!("${DATA_ENV}")),
            _ => return Ok(PathBuf::from(".")),
        },
    };
    if !root.is_dir() {
        let why = if root.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        bail!("{what} {}: {why}", root.display());
    }
    Ok(root)
}

/// `pattern` made concrete: absolute patterns as they are; relative ones under `root`, or under
/// the embedded copy when they name the default preset's shards and `root` lacks them. A pattern
/// that matches nothing comes back resolved under `root`, so the loader's error names that path.
pub fn resolve(pattern: &str, root: &Path) -> Result<String> {
    if Path::new(pattern).is_absolute() {
        return Ok(pattern.to_string());
    }
    let under_root = root.join(pattern).display().to_string();
    if resolve_pattern(&under_root).is_ok() {
        return Ok(under_root);
    }
    let dir = Path::new(pattern).parent().unwrap_or(Path::new(""));
    let embedded: Vec<&(&str, &[u8])> = EMBEDDED
        .iter()
        .filter(|(p, _)| Path::new(p).parent() == Some(dir))
        .collect();
    if embedded.is_empty() {
        return Ok(under_root);
    }
    let cache = unpack(&embedded)?;
    let file = Path::new(pattern).file_name().unwrap_or_default();
    Ok(cache.join(dir).join(file).display().to_string())
}

/// Write the embedded files under a cache directory named by their hash (once; later runs find
/// them complete) and return that directory.
fn unpack(files: &[&(&str, &[u8])]) -> Result<PathBuf> {
    let mut h = Sha256::new();
    for (p, bytes) in files {
        h.update(p.as_bytes());
        h.update(bytes);
    }
    let tag: String = h
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let base = cache_base().join(format!("speedrun/embedded-{tag}"));
    for (p, bytes) in files {
        let path = base.join(p);
        // Hashed, not only sized: a flipped byte in the cache would otherwise be trained on.
        let cached = std::fs::read(&path).ok();
        if cached.as_deref().map(Sha256::digest) == Some(Sha256::digest(bytes)) {
            continue;
        }
        if cached.is_some() {
            crate::out::err_line(&format!(
                "warning: {}: damaged cached copy of a built-in shard (SHA-256 mismatch); written again",
                path.display()
            ));
        }
        crate::fsutil::create_parent(&path)?;
        crate::fsutil::write_atomic(&path, bytes)
            .with_context(|| format!("unpacking the embedded shards to {}", base.display()))?;
    }
    Ok(base)
}

/// `$XDG_CACHE_HOME`, else `~/.cache`, else the temporary directory.
fn cache_base() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XDG_CACHE_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_patterns_resolve_under_the_root_then_the_embedded_copy() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let pat = "data/tinyshakespeare/tinyshakespeare_val_*.bin";
        assert_eq!(
            resolve(pat, root).unwrap(),
            root.join(pat).display().to_string()
        );
        let elsewhere = tempfile::tempdir().unwrap();
        let got = resolve(pat, elsewhere.path()).unwrap();
        let files = resolve_pattern(&got).unwrap();
        assert_eq!(files.len(), 1);
        let want = std::fs::read(root.join("data/tinyshakespeare/tinyshakespeare_val_000000.bin"));
        assert_eq!(std::fs::read(&files[0]).unwrap(), want.unwrap());
        // Unknown data keeps its path under the root, for the loader's error.
        let other = resolve("data/mine/*.bin", elsewhere.path()).unwrap();
        assert!(other.starts_with(&elsewhere.path().display().to_string()));
        assert_eq!(
            resolve("/abs/x.bin", elsewhere.path()).unwrap(),
            "/abs/x.bin"
        );
    }
}
