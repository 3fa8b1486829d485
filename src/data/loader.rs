//! The record-4 "distributed data loader", all ranks of one step at once (docs/data.md,
//! "Token order").
//!
//! Every rank r of world W has its own `(shard, pos)`, exactly like one `DistributedDataLoader`
//! object per process in modded-nanogpt record 4 (train_gpt2.py, 2024-10-11, lines 246-291):
//! - reset: shard 0, `pos = r·B·T`;
//! - next batch: read `tokens[pos .. pos + B·T + 1]` of the rank's current shard (inputs are the
//!   first B·T tokens, targets the same window shifted by one); then `pos += B·T·W`; then, if
//!   `pos + B·T·W + 1 > len(shard)`, move to the next shard (wrapping to shard 0 after the last)
//!   with `pos = r·B·T`.
//!
//! B here is the reference's per-process batch of one `next_batch` call (its
//! `device_batch_size`); a step makes `calls` such calls per rank (its gradient accumulation).
//!
//! Because the test uses each rank's own offset position, near a shard boundary the higher ranks
//! move to the next shard one step before rank 0: for that one step the W windows come from two
//! different shards.
use super::shard::{read_header, resolve_pattern, Shard};
use super::{LoaderPos, RankPos, Window};
use anyhow::{bail, ensure, Result};
use std::path::PathBuf;

/// All W ranks of record 4's data loader in one object: [`Loader::next_step`] returns, for every
/// rank r, exactly the windows that rank r's own loader would return over one step.
///
/// Why per rank: this is the record's behaviour. modded-nanogpt record 4's
/// `DistributedDataLoader` keeps `current_shard` and `current_position` per process, starts rank
/// r at `r·B·T`, and applies the next-shard test `current_position + B·T·W + 1 > len(tokens)` to
/// that rank's own position (train_gpt2.py:283-290), resetting it to `r·B·T` in the next shard.
/// Applying the test to a shared base position instead would keep all ranks in one shard but
/// would read other tokens than the record at every boundary where ranks disagree.
///
/// The repeated first batch ([`Loader::repeat_first_batch`]): the record fetches one batch
/// before its clock starts (`x, y = train_loader.next_batch()`, train_gpt2.py:373), then calls
/// `train_loader.reset()` (:432), and every micro-step trains on the `x, y` it holds before it
/// fetches the next (:488-494). Each rank therefore trains on its window 0 twice, and every later
/// call on the window before the one the rule above gives it. NM-1 does the same
/// (train_gpt_newton_muon_1.py:736, :779, :831). With the option on, each rank's first call of a
/// run returns its window 0 without advancing, which reproduces that stream exactly.
///
/// What it implies: the token order depends only on (B, T, W, calls), the repeat and the shard
/// lengths, never on how many GPUs run it. The state to save for a resume is every rank's
/// `(shard, pos)` and whether the repeat is still to come ([`LoaderPos`]). At most the shards
/// some rank currently uses are mapped (usually one, two during a boundary step).
pub struct Loader {
    files: Vec<PathBuf>,
    /// Token count of every shard, from the headers (read once at construction).
    lens: Vec<usize>,
    b: usize,
    t: usize,
    world: usize,
    /// `next_batch` calls per rank per step.
    calls: usize,
    vocab_size: usize,
    /// Whether a reset arms the repeat of each rank's first window.
    repeat_first: bool,
    /// Track 3's generator instead of record 4's loader (see [`Loader::track3_generator`]):
    /// one shared position, read as one window and cut into this many ranks' windows.
    shared_split: Option<usize>,
    /// Per-rank state, in rank order (length `world`): the next window rank r reads.
    ranks: Vec<RankPos>,
    /// The next call of every rank reads its window without advancing (the repeat to come).
    repeat_pending: bool,
    /// Completed passes over the shards (rank 0's wraps to shard 0).
    epoch: usize,
    /// The mapped shards, exactly those some rank is in (by shard index).
    mapped: Vec<(usize, Shard)>,
}

impl Loader {
    /// `pattern`: a directory (all `*.bin`), a single file or a glob; shards in sorted order.
    /// `b` sequences of `t` tokens per call and rank, one call per rank per step (see
    /// [`Loader::with_calls`]). Every shard's header is checked now; token ids are checked
    /// against `vocab_size` when a shard is mapped.
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
                    "{}: shard has {n} tokens, too small for one call of B*T*world+1 = {need} tokens (B={b}, T={t}, world={world})",
                    f.display()
                );
            }
            lens.push(n);
        }
        let mut l = Self {
            files,
            lens,
            b,
            t,
            world,
            calls: 1,
            vocab_size,
            repeat_first: false,
            shared_split: None,
            ranks: Vec::new(),
            repeat_pending: false,
            epoch: 0,
            mapped: Vec::new(),
        };
        l.reset()?;
        Ok(l)
    }

    /// `calls` `next_batch` calls per rank make one step (the reference's gradient
    /// accumulation); each rank's window of a step is their concatenation.
    pub fn with_calls(mut self, calls: usize) -> Result<Self> {
        ensure!(calls > 0, "loader: calls per step must be positive");
        self.calls = calls;
        Ok(self)
    }

    /// Reproduce the records' repeated first batch (see [`Loader`]); armed again by every reset.
    pub fn repeat_first_batch(mut self, on: bool) -> Self {
        self.repeat_first = on;
        self.repeat_pending = on;
        self
    }

    /// Read as Track 3's `distributed_data_generator` does (train_gpt_simple.py:39-52): one
    /// position shared by all `ranks`, checked before each read (`pos + S + 1 >= len`: the
    /// next shard, at 0), the step's S + 1 tokens cut into `ranks` windows of S/ranks (+1), and
    /// `pos += S`. The loader must have been built with world 1 and B the whole step's
    /// sequences. Every shard must hold more than S + 1 tokens (the test skips one of exactly
    /// S + 1, which this refuses instead).
    pub fn track3_generator(mut self, ranks: usize) -> Result<Self> {
        ensure!(
            self.world == 1 && ranks > 0 && self.b.is_multiple_of(ranks) && self.calls == 1,
            "loader: Track 3's generator reads one window of B·T tokens per step and cuts it into {ranks} ranks (B = {})",
            self.b
        );
        let need = self.call_tokens() + 2;
        for (f, &n) in self.files.iter().zip(&self.lens) {
            ensure!(
                n >= need,
                "{}: shard has {n} tokens, too few for Track 3's generator, which needs more than one step + 1 = {} tokens",
                f.display(),
                need - 1
            );
        }
        self.shared_split = Some(ranks);
        Ok(self)
    }

    /// The reset state of rank r: shard 0, `pos = r·B·T`.
    fn start(&self, r: usize) -> RankPos {
        RankPos {
            shard: 0,
            pos: r * self.b * self.t,
        }
    }

    /// Rank r's state after one `next_batch` from `p`, and whether it wrapped to shard 0.
    fn advanced(&self, r: usize, p: RankPos) -> (RankPos, bool) {
        let st = self.call_tokens();
        let pos = p.pos + st;
        if pos + st + 1 > self.lens[p.shard] {
            let shard = (p.shard + 1) % self.files.len();
            let wrapped = shard == 0;
            let mut next = self.start(r);
            next.shard = shard;
            (next, wrapped)
        } else {
            (
                RankPos {
                    shard: p.shard,
                    pos,
                },
                false,
            )
        }
    }

    /// Map the shards in `need` that are not mapped yet. On a mapping error nothing changes.
    fn map(&mut self, need: &[usize]) -> Result<()> {
        let mut fresh = Vec::new();
        for &s in need {
            let known = self.mapped.iter().any(|(m, _)| *m == s);
            if !known && !fresh.iter().any(|(m, _)| *m == s) {
                let shard = Shard::open(&self.files[s])?;
                shard.check_vocab(self.vocab_size)?;
                fresh.push((s, shard));
            }
        }
        self.mapped.extend(fresh);
        self.mapped.sort_by_key(|(m, _)| *m);
        Ok(())
    }

    /// Install a new per-rank state, mapping what it uses and unmapping the rest. On a mapping
    /// error nothing changes.
    fn set_ranks(&mut self, ranks: Vec<RankPos>) -> Result<()> {
        let used: Vec<usize> = ranks.iter().map(|p| p.shard).collect();
        self.map(&used)?;
        self.mapped.retain(|(m, _)| used.contains(m));
        self.ranks = ranks;
        Ok(())
    }

    fn shard(&self, s: usize) -> &Shard {
        self.mapped
            .iter()
            .find(|(m, _)| *m == s)
            .map(|(_, sh)| sh)
            .expect("loader: every shard in use is mapped")
    }

    /// Indices of the shards currently mapped (for tests of the mapping policy).
    #[cfg(test)]
    pub(crate) fn mapped_shards(&self) -> Vec<usize> {
        self.mapped.iter().map(|(m, _)| *m).collect()
    }

    /// Tokens one call of every rank reads: B·T·world (the stride of a rank's position).
    pub fn call_tokens(&self) -> usize {
        self.b * self.t * self.world
    }

    /// Tokens consumed by one step (all ranks, all calls): B·T·world·calls.
    pub fn step_tokens(&self) -> usize {
        self.call_tokens() * self.calls
    }

    /// The windows every rank reads over the next step (in rank order, each the concatenation
    /// of its `calls` calls), without touching the state: the positions read, the state after
    /// the step, and rank 0's wraps.
    fn plan(&self) -> (Vec<Vec<RankPos>>, Vec<RankPos>, usize) {
        if self.shared_split.is_some() {
            // Track 3: the test comes before the read, with >=.
            let mut p = self.ranks[0];
            let st = self.call_tokens();
            let mut wraps = 0;
            if p.pos + st + 1 >= self.lens[p.shard] {
                p.shard = (p.shard + 1) % self.files.len();
                p.pos = 0;
                wraps += usize::from(p.shard == 0);
            }
            let after = RankPos {
                shard: p.shard,
                pos: p.pos + st,
            };
            return (vec![vec![p]], vec![after], wraps);
        }
        let mut reads = Vec::with_capacity(self.world);
        let mut after = Vec::with_capacity(self.world);
        let mut wraps = 0;
        for r in 0..self.world {
            let mut p = self.ranks[r];
            let mut pending = self.repeat_pending;
            let mut mine = Vec::with_capacity(self.calls);
            for _ in 0..self.calls {
                mine.push(p);
                if pending {
                    // The repeat: the window read again by the next call.
                    pending = false;
                    continue;
                }
                let (next, wrapped) = self.advanced(r, p);
                wraps += usize::from(wrapped && r == 0);
                p = next;
            }
            reads.push(mine);
            after.push(p);
        }
        (reads, after, wraps)
    }

    /// The `world` windows of the next step, in rank order, each `calls` calls long; then every
    /// rank advances by its own rule (see [`Loader`]). A shard that fails to map (e.g. a token
    /// id ≥ vocab) is an error and leaves the position unchanged.
    pub fn next_step(&mut self) -> Result<Vec<Window>> {
        let (reads, after, wraps) = self.plan();
        let mut need: Vec<usize> = reads.iter().flatten().map(|p| p.shard).collect();
        need.extend(after.iter().map(|p| p.shard));
        self.map(&need)?;
        let bt = self.b * self.t;
        let windows = reads
            .iter()
            .map(|mine| {
                let mut w = Window {
                    inputs: Vec::with_capacity(bt * mine.len()),
                    targets: Vec::with_capacity(bt * mine.len()),
                };
                for p in mine {
                    let buf = self.shard(p.shard).slice_u32(p.pos, bt + 1);
                    w.inputs.extend_from_slice(&buf[..bt]);
                    w.targets.extend_from_slice(&buf[1..]);
                }
                w
            })
            .collect();
        self.set_ranks(after)?;
        self.repeat_pending = false;
        self.epoch += wraps;
        Ok(match self.shared_split {
            Some(ranks) => split_window(windows, ranks),
            None => windows,
        })
    }

    /// Every rank's `(shard, pos)` (the window each will read next; Track 3's shared position
    /// before its test) and the pending repeat.
    pub fn position(&self) -> LoaderPos {
        LoaderPos {
            ranks: self.ranks.clone(),
            epoch: self.epoch,
            repeat_pending: self.repeat_pending,
        }
    }

    /// Resume at a position saved by [`Loader::position`]. It must have one entry per rank, and
    /// every rank's shard must exist and hold its B·T+1-token window at `pos`.
    pub fn seek(&mut self, p: LoaderPos) -> Result<()> {
        ensure!(
            p.ranks.len() == self.world,
            "loader: cannot seek to a position with {} rank(s): this loader has world {}",
            p.ranks.len(),
            self.world
        );
        ensure!(
            !p.repeat_pending || self.repeat_first,
            "loader: the position has the first batch's repeat still to come, but this run does not repeat it (train.repeat_first_batch = false)"
        );
        let win = self.b * self.t + 1;
        for (r, rp) in p.ranks.iter().enumerate() {
            ensure!(
                rp.shard < self.files.len(),
                "loader: rank {r}: cannot seek to shard {} of {} shards",
                rp.shard,
                self.files.len()
            );
            let len = self.lens[rp.shard];
            // Track 3's saved position is before its test, which may still move it on.
            let win = if self.shared_split.is_some() { 0 } else { win };
            ensure!(
                rp.pos.checked_add(win).is_some_and(|end| end <= len),
                "{}: rank {r}: cannot seek to position {}: a window needs {win} tokens and the shard has {len}",
                self.files[rp.shard].display(),
                rp.pos
            );
        }
        self.set_ranks(p.ranks)?;
        self.epoch = p.epoch;
        self.repeat_pending = p.repeat_pending;
        Ok(())
    }

    /// Completed passes over the shards: a training run past the end of its data wraps to the
    /// first shard and reads the same tokens again.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Every rank back to its start (shard 0, `pos = r·B·T`), the repeat armed again if the
    /// loader repeats its first batch: the validation loader does this before every evaluation.
    pub fn reset(&mut self) -> Result<()> {
        let start = (0..self.world).map(|r| self.start(r)).collect();
        self.set_ranks(start)?;
        self.epoch = 0;
        self.repeat_pending = self.repeat_first;
        Ok(())
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

    /// Steps needed to read a fixed token budget (`val_tokens / (B·T·world·calls)`), as record 4's
    /// validation does (10,485,760 = 20 × 524,288). Errors unless the budget is a whole number of
    /// steps that the shards can supply, from a reset, without any rank wrapping around.
    pub fn steps_for_tokens(&self, budget: usize) -> Result<usize> {
        let st = self.step_tokens();
        ensure!(
            budget > 0 && budget.is_multiple_of(st),
            "validation budget {budget} tokens is not a positive multiple of B*T*world = {st}"
        );
        let steps = budget / st;
        let calls = steps * self.calls;
        // Simulate every rank's walk from its reset state without mapping anything.
        for r in 0..self.world {
            let mut p = self.start(r);
            for _ in 0..calls - 1 {
                let (next, wrapped) = self.advanced(r, p);
                ensure!(
                    !wrapped,
                    "validation budget {budget} tokens needs more than the {} tokens available in {} shard(s)",
                    self.total_tokens(),
                    self.lens.len()
                );
                p = next;
            }
        }
        Ok(steps)
    }
}

/// One window of W·L tokens (+1) cut into W windows of L (+1): rank r's inputs are tokens
/// r·L .. (r+1)·L of it, its targets the same shifted by one.
fn split_window(mut windows: Vec<Window>, ranks: usize) -> Vec<Window> {
    let w = windows.remove(0);
    let l = w.inputs.len() / ranks;
    let mut all = w.inputs;
    all.push(*w.targets.last().expect("a window has targets"));
    (0..ranks)
        .map(|r| Window {
            inputs: all[r * l..(r + 1) * l].to_vec(),
            targets: all[r * l + 1..(r + 1) * l + 1].to_vec(),
        })
        .collect()
}
