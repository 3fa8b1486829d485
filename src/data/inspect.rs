//! Shard summaries (`speedrun data inspect`): token counts per file, the id range checked against
//! a vocabulary, and the first tokens of the first shard decoded.
use super::shard::{resolve_pattern, Shard};
use super::tokenize::load_tokenizer;
use anyhow::Result;
use std::path::PathBuf;

/// What [`inspect`] found in a set of shards.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Every shard in sorted order with its token count.
    pub shards: Vec<(PathBuf, usize)>,
    /// Tokens in all shards.
    pub total: usize,
    /// Smallest and largest token id over all shards.
    pub min_id: u16,
    pub max_id: u16,
    /// The vocabulary size the ids were checked against.
    pub vocab: usize,
    /// The leading ids of the first shard and their GPT-2 decoding (empty when `total` is 0).
    pub head: Vec<u32>,
    pub decoded: String,
}

impl Summary {
    /// Whether every id is below the vocabulary size.
    pub fn ids_in_vocab(&self) -> bool {
        (self.max_id as usize) < self.vocab
    }
}

/// Summarise the shards matched by `pattern` (a file, a directory of `*.bin` or a glob), decoding
/// the first `head` tokens of the first shard with the embedded GPT-2 tokenizer. When every shard
/// is empty the summary has `total == 0` and no head; callers decide whether that is an error.
pub fn inspect(pattern: &str, vocab: usize, head: usize) -> Result<Summary> {
    let files = resolve_pattern(pattern)?;
    let tok = load_tokenizer(None)?;
    let mut total = 0usize;
    let (mut lo, mut hi) = (u16::MAX, 0u16);
    let mut shards = Vec::with_capacity(files.len());
    for f in files {
        let s = Shard::open(&f)?;
        total += s.len();
        if let Some((a, b)) = s.min_max() {
            lo = lo.min(a);
            hi = hi.max(b);
        }
        shards.push((f, s.len()));
    }
    let (head, decoded) = if total == 0 {
        (Vec::new(), String::new())
    } else {
        let first = Shard::open(&shards[0].0)?;
        let ids = first.slice_u32(0, head.min(first.len()));
        let text = tok
            .decode(&ids, false)
            .map_err(|e| anyhow::anyhow!("decode failed: {e}"))?;
        (ids, text)
    };
    Ok(Summary {
        shards,
        total,
        min_id: lo,
        max_id: hi,
        vocab,
        head,
        decoded,
    })
}
