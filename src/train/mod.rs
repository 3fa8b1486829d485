//! The trainer: presets and overrides ([`config`]), the record-4 LR schedule ([`schedule`]), the loop
//! ([`trainer`]), logs ([`log`]) and atomic safetensors checkpoints ([`checkpoint`]).

pub mod bench;
pub mod checkpoint;
pub mod config;
mod init;
pub mod log;
pub mod progress;
pub mod race;
pub mod run_dir;
pub mod schedule;
mod start;
pub mod step;
pub mod trainer;

pub use config::Config;
pub use init::write_init_weights;
pub use trainer::{train, Resume, RunOptions, StepOutcome, Trainer};

#[cfg(test)]
mod tests;
