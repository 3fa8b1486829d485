//! The lock that makes one process the only writer of a run directory: `RUN/.lock` holds an
//! exclusive advisory lock (flock on Linux) for the life of the trainer, and the holder's PID.
//! The kernel releases it when the process dies, even under kill -9, so no lock goes stale.

use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The lock file of a run directory.
pub fn lock_path(run_dir: &Path) -> PathBuf {
    run_dir.join(".lock")
}

/// Open a lock file without following a symlink: a link named `.lock` would otherwise make the
/// PID land in whatever file it points at.
fn open_no_follow(path: &Path, write: bool) -> std::io::Result<fs::File> {
    let mut o = fs::OpenOptions::new();
    o.read(true);
    if write {
        o.write(true).create(true).truncate(false);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut o, libc::O_NOFOLLOW);
    o.open(path)
}

/// Why a lock file cannot be opened, in words: a symlink is named as such.
fn open_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        anyhow::anyhow!(
            "{}: is a symbolic link; a run's lock file never is (remove it)",
            path.display()
        )
    } else {
        anyhow::Error::new(e).context(format!("{}: cannot open", path.display()))
    }
}

/// The PID recorded in an open lock file ("unknown" when empty or unreadable).
fn holder(file: &mut fs::File) -> String {
    let mut s = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut s));
    match s.trim() {
        "" => "unknown".to_string(),
        pid => crate::fsutil::shorten(pid, 20),
    }
}

fn in_use(run_dir: &Path, pid: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: in use by another speedrun process (pid {pid}); wait for it to end or pick another --name",
        run_dir.display()
    )
}

/// Held for the life of the value.
#[derive(Debug)]
pub struct RunLock {
    _file: fs::File,
}

impl RunLock {
    /// Lock `run_dir` (which must exist), recording this process's id in `.lock`. A reader's
    /// [`probe`] holds a shared lock for an instant, so a busy lock is tried a few times before
    /// the run is taken to be in use.
    pub fn acquire(run_dir: &Path) -> Result<RunLock> {
        let path = lock_path(run_dir);
        let mut file = open_no_follow(&path, true).map_err(|e| open_error(&path, e))?;
        let mut tries = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock) if tries < 5 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => bail!(in_use(run_dir, &holder(&mut file))),
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("{}: cannot lock", path.display()))
                }
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())
            .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(RunLock { _file: file })
    }
}

/// Whether a process holds the lock of `run_dir`, without taking it: `Ok(Some(pid))` while a
/// trainer writes the run, `Ok(None)` when none does (or the run never had a lock). A lock file
/// that cannot be opened (a symlink, no permission) is an error.
pub fn probe(run_dir: &Path) -> Result<Option<String>> {
    let path = lock_path(run_dir);
    if fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let mut file = open_no_follow(&path, false).map_err(|e| open_error(&path, e))?;
    match file.try_lock_shared() {
        Ok(()) => Ok(None),
        Err(fs::TryLockError::WouldBlock) => Ok(Some(holder(&mut file))),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("{}: cannot test the lock", path.display()))
        }
    }
}

/// Error when a trainer holds `run_dir`'s lock, naming its PID.
pub fn check_free(run_dir: &Path) -> Result<()> {
    match probe(run_dir)? {
        Some(pid) => Err(in_use(run_dir, &pid)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_free_and_symlinked_locks() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(probe(dir.path()).unwrap(), None, "no lock file yet");
        let lock = RunLock::acquire(dir.path()).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(probe(dir.path()).unwrap(), Some(pid.clone()));
        let e = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {pid}")), "{e}");
        assert!(check_free(dir.path()).is_err());
        drop(lock);
        assert_eq!(probe(dir.path()).unwrap(), None);
        check_free(dir.path()).unwrap();
        // A symlinked lock is refused, and the file it points at is left alone.
        let other = tempfile::tempdir().unwrap();
        let target = other.path().join("precious");
        fs::write(&target, "mine").unwrap();
        let run = other.path().join("run");
        fs::create_dir(&run).unwrap();
        std::os::unix::fs::symlink(&target, lock_path(&run)).unwrap();
        let e = RunLock::acquire(&run).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(probe(&run)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
        assert_eq!(fs::read_to_string(&target).unwrap(), "mine");
    }
}
