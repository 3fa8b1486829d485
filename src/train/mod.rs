//! The trainer: presets and overrides, LR schedule, the loop, logs and checkpoints.
