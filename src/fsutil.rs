//! Crash-safe file writes. Every file the project writes (checkpoints, initial weights, shards,
//! summaries, configs) goes through [`write_atomic_with`]: the bytes land in a temporary file next
//! to the target, the file is fsynced, renamed over the target, and the directory is fsynced so the
//! rename itself is durable (POSIX rename(2) is atomic; without the directory fsync a power loss can
//! still roll it back). A reader therefore sees the old file or the new one, never half of either.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

/// The temporary name used while `path` is written: `.<file name>.tmp<pid>` in the same directory
/// (same filesystem, so the rename cannot turn into a copy).
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Write `path` atomically, with `write` producing the content at the temporary path it is given
/// (for writers that take a path, such as safetensors). The temporary file is removed on failure.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    let res = write(&tmp).and_then(|()| {
        let f =
            fs::File::open(&tmp).with_context(|| format!("{}: cannot reopen", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("{}: fsync failed", tmp.display()))?;
        fs::rename(&tmp, path)
            .with_context(|| format!("{}: cannot rename into place", path.display()))
    });
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res?;
    sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f =
            fs::File::create(tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("{}: write failed", tmp.display()))
    })
}

/// `value` as pretty JSON (with a final newline), written atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// fsync a directory so that renames into it survive a power loss. Not every platform can open a
/// directory for syncing; there the rename is as durable as the OS makes it.
pub fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Create `path`'s parent directory if it has one.
pub fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create", parent.display()))?;
        }
    }
    Ok(())
}

/// The longest name [`check_name`] accepts: a run directory or a shard prefix, with room for
/// what is added to it (`-s<seed>`, `_train_000001.bin`) under the usual 255-byte file-name limit.
pub const MAX_NAME_LEN: usize = 128;

/// A name that becomes one file or directory name (a run name, a race label, a shard prefix):
/// ASCII letters, digits, '-', '_' and '.', not starting with '.' or '-', at most
/// [`MAX_NAME_LEN`] characters. Anything else could leave the directory it is meant for
/// (`../x`, `/abs`), hide (`.x`), read as a flag (`-x`), or need quoting in every shell.
pub fn check_name(name: &str) -> Result<()> {
    let len = name.chars().count();
    let why = if name.is_empty() {
        "is empty".to_string()
    } else if name == "." || name == ".." {
        "is not a directory name".to_string()
    } else if name.contains(['/', '\\']) {
        "contains a path separator".to_string()
    } else if len > MAX_NAME_LEN {
        format!("is {len} characters long (at most {MAX_NAME_LEN})")
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        format!("contains {c:?}")
    } else if name.starts_with(['.', '-']) {
        "starts with '.' or '-'".to_string()
    } else {
        return Ok(());
    };
    anyhow::bail!(
        "{:?} {why}; use ASCII letters, digits, '-', '_' and '.' (not first), at most {MAX_NAME_LEN} characters",
        shorten(name, 40)
    )
}

/// `s` cut to its first `n` characters, with "…" when cut (for quoting user input in messages).
pub fn shorten(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_plain_ascii_component() {
        for ok in [
            "muon-lr0.003-s0",
            "a_b",
            "x.y",
            "_x",
            &"a".repeat(MAX_NAME_LEN),
        ] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/abs",
            "a/b",
            "a\\b",
            "new\nline",
            "tab\there",
            "é",
            "a b",
            "a*",
            "a:b",
            ".hidden",
            "-flag",
            &long,
        ] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains("use ASCII letters"), "{bad:?}: {e}");
        }
        assert!(check_name(&long)
            .unwrap_err()
            .to_string()
            .contains("129 characters"));
    }

    #[test]
    fn replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"old").unwrap();
        write_json(&p, &serde_json::json!({"x": 1})).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\n  \"x\": 1\n}\n");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left behind");
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.bin");
        write_atomic(&p, b"good").unwrap();
        let err = write_atomic_with(&p, |tmp| {
            fs::write(tmp, b"half")?;
            anyhow::bail!("disk full")
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"good");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
