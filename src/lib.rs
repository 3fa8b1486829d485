//! speedrun: the modded-nanogpt record-4 GPT-2 trainer on candle, with an optimizer race
//! (AdamW, Muon, Newton-Muon, Neon).
//!
//! The crate follows the pipeline: `data` (shards, loader, tokenizer, hub fetch) → `model`
//! (record-4 GPT) → `optim` (one optimizer per file behind [`optim::Optimizer`]) → `train`
//! (config, schedule, loop, checkpoints) → `report` (compare runs), with `cli` on top. Beside
//! them: `device` (the execution policy), `dist` (the processes of a data-parallel run) and
//! `fsutil` (the one atomic file writer).

pub mod alloc;
pub mod cli;
pub mod cpu;
pub mod data;
pub mod device;
pub mod dist;
pub mod fsutil;
pub mod model;
pub mod optim;
pub mod report;
pub mod train;

/// Collapse a multi-line message (toml's errors quote the source over several lines) into one
/// line, for the one-line errors the CLI prints.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
