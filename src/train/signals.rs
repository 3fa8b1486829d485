//! Ctrl-C and `kill` without lost work: the first SIGINT or SIGTERM is noted and the trainer
//! stops after the step in progress, with a checkpoint; a second one exits at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Result;
use signal_hook::consts::{SIGINT, SIGTERM};

/// The first signal received (0: none).
static PENDING: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

fn pending_cell() -> &'static Arc<AtomicUsize> {
    PENDING.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// Install the handlers (once per process; later calls do nothing). Until this is called, signals
/// keep their default action, so library users and tests are not affected.
pub fn install() -> Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let cell = pending_cell().clone();
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it runs first: exit at once when a signal is already pending.
        let second = Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, second.clone())?;
        let cell = cell.clone();
        // SAFETY: the closure only does atomic stores, which are async-signal-safe.
        unsafe {
            signal_hook::low_level::register(sig, move || {
                let _ = cell.compare_exchange(0, sig as usize, Ordering::SeqCst, Ordering::SeqCst);
                second.store(true, Ordering::SeqCst);
            })?;
        }
    }
    let _ = INSTALLED.set(());
    Ok(())
}

/// The signal that asked the run to stop, if any.
pub fn pending() -> Option<i32> {
    match pending_cell().load(Ordering::SeqCst) {
        0 => None,
        s => Some(s as i32),
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
        _ => "signal",
    }
}
