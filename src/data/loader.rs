//! The record-4 "distributed data loader", all ranks of one step at once (spec:
//! `/work/shared/spec/record4.md`, "Data loader order").
//!
//! Rank r of world W reads `tokens[pos + r·B·T .. pos + r·B·T + B·T + 1]`; inputs are the first
//! B·T tokens and targets the same window shifted by one. Then `pos += B·T·W`, and when
//! `pos + B·T·W + 1 > len(shard)` the loader moves to the next shard (wrapping to shard 0) with
//! `pos = 0`. In modded-nanogpt each rank applies that test to its own offset position, so on a
//! real 8-GPU run ranks r > 0 can switch shard one step before rank 0; we apply it to the shared
//! base position (as the spec states), which keeps all W windows of a step in one shard.
use super::shard::{read_header, resolve_pattern, Shard};
use super::{LoaderPos, Window};
use anyhow::{bail, ensure, Result};
use std::path::PathBuf;

pub struct Loader {
    files: Vec<PathBuf>,
    /// Token count of every shard, from the headers (read once at construction).
    lens: Vec<usize>,
    b: usize,
    t: usize,
    world: usize,
    vocab_size: usize,
    /// Only the current shard is mapped.
    current: Shard,
    shard: usize,
    pos: usize,
}

impl Loader {
    /// `pattern`: a directory (all `*.bin`), a single file or a glob; shards in sorted order.
    /// Every shard's header is checked now; token ids are checked against `vocab_size` when a
    /// shard is mapped.
    pub fn new(pattern: &str, b: usize, t: usize, world: usize, vocab_size: usize) -> Result<Self> {
        ensure!(
            b > 0 && t > 0 && world > 0,
            "loader: B, T and world must be positive (got B={b}, T={t}, world={world})"
        );
        let files = resolve_pattern(pattern)?;
        let need = b * t * world + 1;
        let mut lens = Vec::with_capacity(files.len());
        for f in &files {
            let n = read_header(f)?;
            if n < need {
                bail!(
                    "{}: shard has {n} tokens, too small for one step of B*T*world+1 = {need} tokens (B={b}, T={t}, world={world})",
                    f.display()
                );
            }
            lens.push(n);
        }
        let current = Self::map(&files[0], vocab_size)?;
        Ok(Self {
            files,
            lens,
            b,
            t,
            world,
            vocab_size,
            current,
            shard: 0,
            pos: 0,
        })
    }

    fn map(path: &std::path::Path, vocab_size: usize) -> Result<Shard> {
        let s = Shard::open(path)?;
        s.check_vocab(vocab_size)?;
        Ok(s)
    }

    fn load_shard(&mut self, shard: usize) -> Result<()> {
        if shard != self.shard {
            self.current = Self::map(&self.files[shard], self.vocab_size)?;
            self.shard = shard;
        }
        Ok(())
    }

    /// Tokens consumed by one step (all ranks): B·T·world.
    pub fn step_tokens(&self) -> usize {
        self.b * self.t * self.world
    }

    /// The `world` windows of the next step, in rank order.
    pub fn next_step(&mut self) -> Result<Vec<Window>> {
        let bt = self.b * self.t;
        let windows = (0..self.world)
            .map(|r| {
                let buf = self.current.slice_u32(self.pos + r * bt, bt + 1);
                Window {
                    inputs: buf[..bt].to_vec(),
                    targets: buf[1..].to_vec(),
                }
            })
            .collect();
        self.pos += self.step_tokens();
        if self.pos + self.step_tokens() + 1 > self.lens[self.shard] {
            let next = (self.shard + 1) % self.files.len();
            self.load_shard(next)?;
            self.pos = 0;
        }
        Ok(windows)
    }

    pub fn position(&self) -> LoaderPos {
        LoaderPos {
            shard: self.shard,
            pos: self.pos,
        }
    }

    /// Resume at a position saved by [`Loader::position`]; it must fit the same shards and shape.
    pub fn seek(&mut self, p: LoaderPos) -> Result<()> {
        ensure!(
            p.shard < self.files.len(),
            "loader: cannot seek to shard {} of {} shards",
            p.shard,
            self.files.len()
        );
        let len = self.lens[p.shard];
        ensure!(
            p.pos + self.step_tokens() < len,
            "{}: cannot seek to position {}: a step needs {} tokens and the shard has {len}",
            self.files[p.shard].display(),
            p.pos,
            self.step_tokens() + 1
        );
        self.load_shard(p.shard)?;
        self.pos = p.pos;
        Ok(())
    }

    /// Back to shard 0, position 0 (the validation loader does this before every evaluation).
    pub fn reset(&mut self) -> Result<()> {
        self.seek(LoaderPos { shard: 0, pos: 0 })
    }

    /// Tokens in the first shard (for validation: the val shard).
    pub fn num_tokens(&self) -> usize {
        self.lens[0]
    }

    /// Tokens in all shards.
    pub fn total_tokens(&self) -> usize {
        self.lens.iter().sum()
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Steps needed to read a fixed token budget (`val_tokens / (B·T·world)`), as record 4's
    /// validation does (10,485,760 = 20 × 524,288). Errors unless the budget is a whole number of
    /// steps that the shards can supply without wrapping around.
    pub fn steps_for_tokens(&self, budget: usize) -> Result<usize> {
        let st = self.step_tokens();
        ensure!(
            budget > 0 && budget % st == 0,
            "validation budget {budget} tokens is not a positive multiple of B*T*world = {st}"
        );
        let steps = budget / st;
        // Simulate the shard walk from (0, 0) without mapping anything.
        let (mut shard, mut pos) = (0usize, 0usize);
        for _ in 0..steps - 1 {
            pos += st;
            if pos + st + 1 > self.lens[shard] {
                shard += 1;
                pos = 0;
                ensure!(
                    shard < self.lens.len(),
                    "validation budget {budget} tokens needs more than the {} tokens available in {} shard(s)",
                    self.total_tokens(),
                    self.lens.len()
                );
            }
        }
        Ok(steps)
    }
}
