//! Console output that never ends the process. Rust ignores SIGPIPE, so a write to a pipe whose
//! reader has gone (`speedrun train | head -1`, a `| tee` stopped by Ctrl-C) returns EPIPE, and
//! `println!` panics on it; a closed terminal gives EIO the same way. A run must not die of its
//! console: these functions drop a stream's output from its first failed write on, and remember
//! that stdout's reader has gone, so that a trainer can stop cleanly, with a checkpoint, as it
//! does for a signal ([`crate::train::signals::pending`]).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// A write to stdout failed: print nothing more there.
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);
/// The failure was EPIPE: nobody reads stdout any more.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_FAILED: AtomicBool = AtomicBool::new(false);

fn write_line(w: &mut dyn Write, s: &str) -> std::io::Result<()> {
    w.write_all(s.as_bytes())?;
    w.write_all(b"\n")?;
    w.flush()
}

/// `s` and a newline on stdout, unless stdout has failed before.
pub fn line(s: &str) {
    if STDOUT_FAILED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = write_line(&mut std::io::stdout().lock(), s) {
        STDOUT_FAILED.store(true, Ordering::Relaxed);
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::SeqCst);
        }
    }
}

/// `s` and a newline on stderr, unless stderr has failed before.
pub fn err_line(s: &str) {
    if STDERR_FAILED.load(Ordering::Relaxed) {
        return;
    }
    if write_line(&mut std::io::stderr().lock(), s).is_err() {
        STDERR_FAILED.store(true, Ordering::Relaxed);
    }
}

/// `s` on stdout as it is (no newline added), unless stdout has failed before.
pub fn text(s: &str) {
    if STDOUT_FAILED.load(Ordering::Relaxed) {
        return;
    }
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(s.as_bytes()).and_then(|()| o.flush()) {
        STDOUT_FAILED.store(true, Ordering::Relaxed);
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::SeqCst);
        }
    }
}

/// Whether stdout's reader has gone (a write met EPIPE).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::SeqCst)
}

/// Let SIGPIPE end the process, as it ends `cat` or `grep`: for the commands that only print
/// (`compare | head` then stops quietly). The training commands keep Rust's default (ignored)
/// and stop through [`stdout_closed`] with a checkpoint instead.
pub fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: signal(2) only changes SIGPIPE's disposition; no handler of ours is replaced.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
