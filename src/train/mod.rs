//! The trainer: presets and overrides ([`config`], data paths in [`data_root`]), the record-4 LR
//! schedule ([`schedule`]), the [`Trainer`] ([`trainer`]: open, run, step, validate; what it
//! writes in `outputs`; how it starts in `start`), the optimizer diagnostics ([`diagnostics`]),
//! samples while training ([`samples`]), one [`progress::Progress`] behind the checkpoint state
//! and the summary, logs ([`log`]), atomic safetensors checkpoints ([`checkpoint`]) and the
//! weights `sample` and `eval` read from them ([`weights`]), the run directory's files, lock and
//! what a resume finds there ([`run_dir`], [`lock`], [`resume`]), early endings ([`outcome`],
//! [`signals`]), races ([`race`]) and the step bench ([`bench`]).

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data_root;
pub mod diagnostics;
pub use crate::dist;
mod init;
pub mod lock;
pub mod log;
pub mod outcome;
mod outputs;
pub mod progress;
pub mod race;
mod ranges;
pub mod resume;
pub mod run_dir;
pub mod samples;
pub mod schedule;
pub mod signals;
mod start;
pub mod step;
pub mod trainer;
pub mod weights;

pub use config::Config;
pub use init::write_init_weights;
pub use outcome::Stopped;
pub use trainer::{train, Resume, RunOptions, StepOutcome, Trainer};

#[cfg(test)]
mod tests;
