//! Data pipeline: modded-nanogpt/llm.c `.bin` shards, the record-4 loader, GPT-2 tokenization,
//! hub fetch and the shipped corpora. Formats and token order: docs/data.md.
//!
//! - [`Loader::new`]`(pattern, b, t, world, vocab_size)`: `pattern` is a directory, a file or a glob.
//! - [`Loader::with_calls`] (calls of B sequences per rank and step) and
//!   [`Loader::repeat_first_batch`] (the records' repeated first batch).
//! - [`Loader::next_step`] returns `world` windows, one per (virtual) rank, in rank order.
//! - [`Loader::position`] / [`Loader::seek`] with the serialisable [`LoaderPos`]
//!   (every rank's `(shard, pos)`, the pending repeat).
//! - [`Loader::reset`] (validation restarts at shard 0, rank r at r·B·T),
//!   [`Loader::steps_for_tokens`] (`val_tokens / (B·T·world)`, checked), [`Loader::num_tokens`],
//!   [`Loader::step_tokens`].
//!
//! Modules: `shard` (format, mmap reads, atomic writes, pattern resolution), `loader`, `tokenize`
//! (text → shards), `fetch` (hf-hub downloads), `inspect` (shard summaries). The command line
//! lives in `cli::data`. Layout and provenance of the shipped files: `data/README.md`.

pub mod fetch;
pub mod inspect;
pub mod loader;
pub mod shard;
pub mod tokenize;

#[cfg(test)]
mod tests;

pub use loader::Loader;
pub use shard::{read_header, read_shard, resolve_pattern, write_shard, Shard};

use serde::{Deserialize, Serialize};

/// GPT-2's `<|endoftext|>` id; every document is preceded by it (docs/data.md, "Shard format").
pub const EOT: u32 = 50256;
/// GPT-2 vocabulary size (not padded in record 4).
pub const GPT2_VOCAB: usize = 50257;

/// Where the loader stands: every rank's own state, in rank order (one entry per rank of the
/// world; see [`Loader`] for why ranks are tracked separately). Saved in `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderPos {
    pub ranks: Vec<RankPos>,
    /// Times rank 0 has wrapped around to the first shard (completed passes over the data).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: usize,
    /// Every rank's next call reads its window again: the records' repeated first batch is
    /// still to come (only before a run's first step; see [`Loader`]).
    #[serde(default, skip_serializing_if = "is_false")]
    pub repeat_pending: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One rank's loader state: its current shard (index in sorted order) and the start of the next
/// window it reads in that shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankPos {
    pub shard: usize,
    pub pos: usize,
}

/// One (inputs, targets) window of B·T tokens each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
}
