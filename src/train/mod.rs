//! The trainer: presets and overrides ([`config`]), the record-4 LR schedule ([`schedule`]), the loop
//! ([`trainer`]), logs ([`log`]) and atomic safetensors checkpoints ([`checkpoint`]).

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data_root;
pub use crate::dist;
mod init;
pub mod log;
pub mod outcome;
mod outputs;
pub mod progress;
pub mod race;
pub mod run_dir;
pub mod schedule;
pub mod signals;
mod start;
pub mod step;
pub mod trainer;

pub use config::Config;
pub use init::write_init_weights;
pub use outcome::Stopped;
pub use trainer::{train, Resume, RunOptions, StepOutcome, Trainer};

#[cfg(test)]
mod tests;
