//! Ctrl-C, `kill`, `timeout` and a closed terminal without lost work. The first SIGINT, SIGTERM
//! or SIGHUP is noted and the trainer stops after the step in progress, with a checkpoint. A
//! second request exits at once, but the same signal again within [`DUPLICATE_WINDOW`] of the
//! first is one request: GNU `timeout` sends SIGTERM to the child and then to its whole process
//! group, and a closed terminal sends SIGHUP from the kernel and again from the shell.
//!
//! The handlers only queue the signal (signal-hook's self-pipe); a watcher thread decides, so no
//! decision runs in signal context.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGPIPE, SIGTERM};

/// A repeat of the first signal within this time is the same request, not a second one. Long
/// enough for the copies one event sends; short of a deliberate second Ctrl-C.
pub const DUPLICATE_WINDOW: Duration = Duration::from_millis(1000);

/// The first signal received (0: none).
static PENDING: AtomicI32 = AtomicI32::new(0);

/// What the watcher does with one more signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The first request: stop after the step in progress.
    Stop,
    /// A copy of the first request: nothing.
    Ignore,
    /// A second request: exit now with this status.
    Exit(i32),
}

/// The decision for signal `sig` at `now`, given the first one seen (signal and time).
pub fn classify(first: Option<(i32, Instant)>, sig: i32, now: Instant) -> Action {
    match first {
        None => Action::Stop,
        Some((s, at)) if s == sig && now.duration_since(at) < DUPLICATE_WINDOW => Action::Ignore,
        Some(_) => Action::Exit(exit_code(sig)),
    }
}

/// Install the handlers (once per process; later calls do nothing). Until this is called, signals
/// keep their default action, so library users and tests are not affected.
pub fn install() -> Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing the signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut first = None;
            for sig in signals.forever() {
                let now = Instant::now();
                match classify(first, sig, now) {
                    Action::Stop => {
                        PENDING.store(sig, Ordering::SeqCst);
                        first = Some((sig, now));
                    }
                    Action::Ignore => {}
                    Action::Exit(code) => {
                        crate::out::err_line(&format!(
                            "second stop request ({}): exiting now; the newest checkpoint is kept",
                            name(sig)
                        ));
                        // _exit: no destructor or atexit handler runs on another thread's data.
                        signal_hook::low_level::exit(code);
                    }
                }
            }
        })
        .context("starting the signal watcher")?;
    let _ = INSTALLED.set(());
    Ok(())
}

/// Why the run should stop, if it should: the first signal received, or SIGPIPE once stdout's
/// reader has gone ([`crate::out::stdout_closed`]).
pub fn pending() -> Option<i32> {
    match PENDING.load(Ordering::SeqCst) {
        0 if crate::out::stdout_closed() => Some(SIGPIPE),
        0 => None,
        s => Some(s),
    }
}

/// Exit status for a run stopped by `sig` (the shell's convention, 128 + signal number).
pub fn exit_code(sig: i32) -> i32 {
    128 + sig
}

/// The name of `sig` for messages.
pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        SIGPIPE => "SIGPIPE: stdout was closed",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_of_the_first_signal_is_not_a_second_request() {
        let t0 = Instant::now();
        assert_eq!(classify(None, SIGTERM, t0), Action::Stop);
        let first = Some((SIGTERM, t0));
        // GNU timeout: the child, then its process group, microseconds apart.
        let soon = t0 + Duration::from_millis(5);
        assert_eq!(classify(first, SIGTERM, soon), Action::Ignore);
        // A different signal is a new request, however soon.
        assert_eq!(classify(first, SIGINT, soon), Action::Exit(130));
        // The same one after the window is a deliberate second Ctrl-C.
        let later = t0 + DUPLICATE_WINDOW + Duration::from_millis(1);
        assert_eq!(classify(first, SIGTERM, later), Action::Exit(143));
        assert_eq!(classify(Some((SIGHUP, t0)), SIGHUP, soon), Action::Ignore);
    }
}
