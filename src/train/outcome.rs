//! How a run can end early, as typed errors that the CLI maps to exit codes and that `race`
//! tells apart (a diverged contestant is recorded and the race goes on; an interrupt stops it).

use std::fmt;

/// Exit status of a run that diverged.
pub const EXIT_DIVERGED: i32 = 3;

#[derive(Debug, Clone, PartialEq)]
pub enum Stopped {
    /// A SIGINT, SIGTERM or SIGHUP arrived, or stdout's reader went away (SIGPIPE); the step in
    /// progress finished and a checkpoint was written.
    Interrupted { signal: i32, step: usize },
    /// The train or val loss was not finite after `step` steps; the last good checkpoint, if
    /// one was written (`kept`), is kept.
    Diverged {
        step: usize,
        loss: f64,
        kept: Option<std::path::PathBuf>,
    },
    /// A SIGINT or SIGTERM stopped a command that is not a run (`sample`) cleanly; `done` says
    /// how far it got.
    Halted { signal: i32, done: String },
}

impl Stopped {
    /// The process exit status for this ending.
    pub fn exit_code(&self) -> i32 {
        match self {
            Stopped::Interrupted { signal, .. } | Stopped::Halted { signal, .. } => {
                super::signals::exit_code(*signal)
            }
            Stopped::Diverged { .. } => EXIT_DIVERGED,
        }
    }
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stopped::Interrupted { step, signal } => write!(
                f,
                "interrupted at step {step} ({}); resume with --resume",
                super::signals::name(*signal)
            ),
            Stopped::Diverged { step, loss, kept } => {
                write!(f, "diverged at step {step} (loss {loss}); ")?;
                match kept {
                    Some(dir) => write!(f, "the last good checkpoint is kept: {}", dir.display())?,
                    None => write!(f, "no checkpoint was written before it")?,
                }
                write!(f, " (lower the lr?)")
            }
            Stopped::Halted { signal, done } => {
                write!(f, "interrupted ({}): {done}", super::signals::name(*signal))
            }
        }
    }
}

impl std::error::Error for Stopped {}
