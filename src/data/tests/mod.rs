//! Shards and loader: round trip, malformed inputs, and the record-4 window order checked against
//! an independent reimplementation on synthetic shards.
mod fetch;
mod tokenize;

use super::shard::{shard_bytes, HEADER_BYTES, MAGIC};
use super::*;
use std::path::{Path, PathBuf};

/// Synthetic shard `s` of length `n`: distinct, recognisable ids (s·1000 + i) below the vocab.
fn synth(s: usize, n: usize) -> Vec<u16> {
    (0..n).map(|i| ((s * 1000 + i) % 50_000) as u16).collect()
}

fn write_shards(dir: &Path, lens: &[usize]) -> Vec<Vec<u16>> {
    lens.iter()
        .enumerate()
        .map(|(s, &n)| {
            let toks = synth(s, n);
            write_shard(&dir.join(format!("x_train_{s:06}.bin")), &toks).unwrap();
            toks
        })
        .collect()
}

/// Reference for modded-nanogpt record 4's `DistributedDataLoader`, written independently of
/// loader.rs as W separate per-rank objects (one per "process"), each following the Python:
/// reset to shard 0 at `r·bt`; a batch reads `tokens[pos..pos+bt+1]`, then `pos += bt·w`, and if
/// `pos + bt·w + 1 > len` the rank moves to the next shard (cyclically) at `r·bt`.
/// The windows of every step (in rank order) and every rank's `(shard, pos)` before it.
type Walk = (Vec<Vec<Window>>, Vec<Vec<(usize, usize)>>);

/// Returns the windows of every step (in rank order) and every rank's `(shard, pos)` before it.
fn reference(shards: &[Vec<u16>], bt: usize, w: usize, steps: usize) -> Walk {
    struct PyRank<'a> {
        shards: &'a [Vec<u16>],
        rank: usize,
        bt: usize,
        w: usize,
        shard: usize,
        pos: usize,
    }
    impl PyRank<'_> {
        fn next_batch(&mut self) -> Window {
            let tokens = &self.shards[self.shard];
            let buf: Vec<u32> = tokens[self.pos..self.pos + self.bt + 1]
                .iter()
                .map(|&x| x as u32)
                .collect();
            self.pos += self.bt * self.w;
            if self.pos + (self.bt * self.w + 1) > tokens.len() {
                self.shard = (self.shard + 1) % self.shards.len();
                self.pos = self.rank * self.bt;
            }
            Window {
                inputs: buf[..buf.len() - 1].to_vec(),
                targets: buf[1..].to_vec(),
            }
        }
    }
    let mut ranks: Vec<PyRank> = (0..w)
        .map(|rank| PyRank {
            shards,
            rank,
            bt,
            w,
            shard: 0,
            pos: rank * bt,
        })
        .collect();
    let (mut wins, mut states) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        states.push(ranks.iter().map(|p| (p.shard, p.pos)).collect());
        wins.push(ranks.iter_mut().map(|p| p.next_batch()).collect());
    }
    (wins, states)
}

fn pos_of(ranks: &[(usize, usize)]) -> LoaderPos {
    LoaderPos {
        epoch: 0,
        ranks: ranks
            .iter()
            .map(|&(shard, pos)| RankPos { shard, pos })
            .collect(),
    }
}

/// Steps at which not all ranks are in the same shard.
fn desync_steps(states: &[Vec<(usize, usize)>]) -> Vec<usize> {
    (0..states.len())
        .filter(|&k| states[k].iter().any(|&(s, _)| s != states[k][0].0))
        .collect()
}

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn shard_round_trip_and_exact_layout() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.bin");
    let toks: Vec<u16> = vec![0, 1, 50256, 65535, 7, 300];
    write_shard(&p, &toks).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(bytes.len(), HEADER_BYTES + 2 * toks.len());
    // Header words 0..3 exactly [20240520 = 0x0134D888, 1, 6] little-endian, the rest zero
    // (the shipped llm.c goldens start with the same 8 bytes).
    assert_eq!(
        &bytes[..12],
        &[0x88, 0xD8, 0x34, 0x01, 1, 0, 0, 0, 6, 0, 0, 0]
    );
    assert_eq!(i32::from_le_bytes(bytes[..4].try_into().unwrap()), MAGIC);
    assert!(bytes[12..HEADER_BYTES].iter().all(|&b| b == 0));
    // 50256 = 0xC450 little-endian.
    assert_eq!(&bytes[HEADER_BYTES + 4..HEADER_BYTES + 6], &[0x50, 0xC4]);
    assert_eq!(read_shard(&p).unwrap(), toks);
    assert_eq!(read_header(&p).unwrap(), 6);
    let s = Shard::open(&p).unwrap();
    assert_eq!(s.slice_u32(2, 3), vec![50256, 65535, 7]);
    assert_eq!(s.min_max(), Some((0, 65535)));
    // Atomic write leaves no temporary behind.
    assert!(!dir.path().join("a.bin.tmp").exists());
    // An empty shard is valid.
    write_shard(&p, &[]).unwrap();
    assert_eq!(read_shard(&p).unwrap(), Vec::<u16>::new());
}

#[test]
fn loader_matches_per_rank_reference_across_boundaries_and_wraparound() {
    let dir = tempfile::tempdir().unwrap();
    // Lengths chosen so steps end exactly on a boundary (49 = 4·12 + 1), leave a remainder (50,
    // 37) and fit a single step (13); with W > 1 they put the boundary at different ranks'
    // offsets, so some steps have ranks in different shards.
    let lens = [49, 50, 13, 37];
    let shards = write_shards(dir.path(), &lens);
    for (b, t, w) in [(2, 3, 2), (1, 4, 3), (3, 2, 1), (1, 1, 12), (1, 2, 5)] {
        let pattern = dir.path().to_str().unwrap();
        let mut l = Loader::new(pattern, b, t, w, GPT2_VOCAB).unwrap();
        let steps = 40; // several full passes: exercises wrap-around to shard 0
        let (want, states) = reference(&shards, b * t, w, steps);
        let desync = desync_steps(&states);
        if w == 1 {
            assert!(desync.is_empty());
        } else {
            assert!(
                !desync.is_empty(),
                "B={b} T={t} W={w}: no desynchronised step"
            );
        }
        let mut wrapped = false;
        for (i, ws) in want.iter().enumerate() {
            // Ranks only: the epoch counter is checked in loader_counts_epochs_and_resumes_them.
            assert_eq!(
                l.position().ranks,
                pos_of(&states[i]).ranks,
                "B={b} T={t} W={w} step {i}"
            );
            // Only the shards some rank is in are mapped.
            let mut used: Vec<usize> = states[i].iter().map(|&(s, _)| s).collect();
            used.sort_unstable();
            used.dedup();
            assert_eq!(l.mapped_shards(), used, "B={b} T={t} W={w} step {i}");
            wrapped |= i > 0 && states[i][0].0 == 0 && states[i - 1][0].0 == 3;
            let got = l.next_step().unwrap();
            assert_eq!(&got, ws, "B={b} T={t} W={w} step {i}");
        }
        assert!(
            wrapped,
            "B={b} T={t} W={w}: no wrap-around in {steps} steps"
        );
    }
}

#[test]
fn reference_walk_matches_hand_derivation() {
    // Shards of 49, 50, 37 tokens, B·T = 6, W = 2 (a step is 12 tokens). Rank 0 starts at 0,
    // rank 1 at 6. In shard 0 rank 1 reads 6, 18, 30, then 42 + 13 > 49 sends it to shard 1
    // (at 6) while rank 0 still reads 36 in shard 0: step 3 is split across shards (and steps 6
    // and 7 across shards 1 and 2).
    let dir = tempfile::tempdir().unwrap();
    let shards = write_shards(dir.path(), &[49, 50, 37]);
    let (wins, states) = reference(&shards, 6, 2, 8);
    let expect: [[(usize, usize); 2]; 8] = [
        [(0, 0), (0, 6)],
        [(0, 12), (0, 18)],
        [(0, 24), (0, 30)],
        [(0, 36), (1, 6)],
        [(1, 0), (1, 18)],
        [(1, 12), (1, 30)],
        [(1, 24), (2, 6)],
        [(1, 36), (2, 18)],
    ];
    for (k, e) in expect.iter().enumerate() {
        assert_eq!(states[k], e.to_vec(), "step {k}");
    }
    assert_eq!(desync_steps(&states), vec![3, 6, 7]);
    // Ids are s·1000 + i: step 3 rank 1 reads shard 1 tokens 6..13.
    assert_eq!(wins[3][1].inputs, (1006..1012).collect::<Vec<u32>>());
    assert_eq!(wins[3][1].targets, (1007..1013).collect::<Vec<u32>>());
    assert_eq!(wins[3][0].inputs, (36..42).collect::<Vec<u32>>());
}

#[test]
fn loader_seek_resume_reset_and_budget() {
    let dir = tempfile::tempdir().unwrap();
    let shards = write_shards(dir.path(), &[49, 50, 37]);
    let pattern = format!("{}/x_train_*.bin", dir.path().display());
    let (b, t, w) = (2, 3, 2);
    let (want, _) = reference(&shards, b * t, w, 30);
    let mut l = Loader::new(&pattern, b, t, w, GPT2_VOCAB).unwrap();
    for ws in &want[..3] {
        assert_eq!(&l.next_step().unwrap(), ws);
    }
    // Save in the middle of the desynchronised boundary step 3 (rank 0 still in shard 0, rank 1
    // already in shard 1), serialise, resume in a fresh loader: the continuation is identical.
    let pos = l.position();
    assert_eq!(pos, pos_of(&[(0, 36), (1, 6)]));
    assert_eq!(l.mapped_shards(), vec![0, 1]);
    let json = serde_json::to_string(&pos).unwrap();
    assert_eq!(
        json,
        r#"{"ranks":[{"shard":0,"pos":36},{"shard":1,"pos":6}]}"#
    );
    let mut l2 = Loader::new(&pattern, b, t, w, GPT2_VOCAB).unwrap();
    l2.seek(serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!(l2.position(), pos);
    assert_eq!(l2.mapped_shards(), vec![0, 1]);
    for ws in &want[3..30] {
        assert_eq!(&l2.next_step().unwrap(), ws);
        assert_eq!(&l.next_step().unwrap(), ws);
    }
    l.reset().unwrap();
    assert_eq!(l.position(), pos_of(&[(0, 0), (0, 6)]));
    assert_eq!(l.mapped_shards(), vec![0]);
    assert_eq!(&l.next_step().unwrap(), &want[0]);
    // Mid-shard seek.
    l.seek(pos_of(&[(1, 12), (1, 30)])).unwrap();
    assert_eq!(&l.next_step().unwrap(), &want[5]);
    // Malformed positions are errors, not panics, and leave the loader where it was.
    let before = l.position();
    let e = err_of(l.seek(pos_of(&[(0, 0)])));
    assert!(e.contains("1 rank(s)") && e.contains("world 2"), "{e}");
    let e = err_of(l.seek(LoaderPos {
        ranks: vec![],
        epoch: 0,
    }));
    assert!(e.contains("0 rank(s)"), "{e}");
    let e = err_of(l.seek(pos_of(&[(0, 0), (3, 0)])));
    assert!(e.contains("rank 1") && e.contains("shard 3 of 3"), "{e}");
    // Shard 2 has 37 tokens: a 7-token window fits at 30 but not at 31.
    l2.seek(pos_of(&[(2, 30), (2, 0)])).unwrap();
    let e = err_of(l.seek(pos_of(&[(2, 31), (2, 0)])));
    assert!(
        e.contains("x_train_000002.bin") && e.contains("rank 0") && e.contains("position 31"),
        "{e}"
    );
    let e = err_of(l.seek(pos_of(&[(0, 0), (1, usize::MAX)])));
    assert!(
        e.contains("x_train_000001.bin") && e.contains("rank 1"),
        "{e}"
    );
    assert!(err_of(
        serde_json::from_str::<LoaderPos>(r#"{"shard":1,"pos":36}"#).map_err(anyhow::Error::from)
    )
    .contains("ranks"));
    assert_eq!(l.position(), before);
    assert_eq!(&l.next_step().unwrap(), &want[6]);
    assert_eq!(l.num_tokens(), 49);
    assert_eq!(l.total_tokens(), 136);
    // Budget: 4 steps fit shard 0 for rank 0 (rank 1 reads its 4th in shard 1); 5 need shard 1;
    // rank 1 gets 3 + 3 + 2 = 8 steps before wrapping, so 8 steps fit and 9 do not.
    assert_eq!(l.steps_for_tokens(48).unwrap(), 4);
    assert_eq!(l.steps_for_tokens(60).unwrap(), 5);
    assert_eq!(l.steps_for_tokens(96).unwrap(), 8);
    assert!(err_of(l.steps_for_tokens(108)).contains("needs more"));
    assert!(err_of(l.steps_for_tokens(50)).contains("multiple"));
    assert!(err_of(l.steps_for_tokens(12 * 12)).contains("needs more"));
    // W = 1 (the validation loader): one rank, no offsets; reset restarts at 0.
    let mut v = Loader::new(&pattern, 2, 3, 1, GPT2_VOCAB).unwrap();
    let (vw, _) = reference(&shards, 6, 1, 3);
    for ws in &vw {
        assert_eq!(&v.next_step().unwrap(), ws);
    }
    v.reset().unwrap();
    assert_eq!(v.position(), pos_of(&[(0, 0)]));
    assert_eq!(&v.next_step().unwrap(), &vw[0]);
}

/// Write raw bytes as a file and return its path.
fn raw(dir: &Path, file: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(file);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn malformed_inputs_give_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = shard_bytes(&synth(0, 20)).unwrap();

    let mut bad_magic = good.clone();
    bad_magic[0] = 0;
    let p = raw(d, "magic.bin", &bad_magic);
    let e = err_of(Loader::new(p.to_str().unwrap(), 1, 4, 1, GPT2_VOCAB));
    assert!(e.contains("magic.bin") && e.contains("magic"), "{e}");

    let mut bad_version = good.clone();
    bad_version[4] = 2;
    let p = raw(d, "version.bin", &bad_version);
    let e = err_of(Shard::open(&p));
    assert!(e.contains("version.bin") && e.contains("version 2"), "{e}");

    let p = raw(d, "count.bin", &good[..good.len() - 2]);
    let e = err_of(read_header(&p));
    assert!(e.contains("count.bin") && e.contains("20 tokens"), "{e}");

    let p = raw(d, "short.bin", &good[..100]);
    let e = err_of(Shard::open(&p));
    assert!(e.contains("short.bin") && e.contains("truncated"), "{e}");
    let p = raw(d, "empty.bin", &[]);
    assert!(err_of(read_header(&p)).contains("empty.bin"));

    let empty = d.join("nothing");
    std::fs::create_dir(&empty).unwrap();
    let e = err_of(Loader::new(empty.to_str().unwrap(), 1, 1, 1, GPT2_VOCAB));
    assert!(e.contains("nothing") && e.contains("no *.bin"), "{e}");
    let g = format!("{}/none_*.bin", d.display());
    let e = err_of(Loader::new(&g, 1, 1, 1, GPT2_VOCAB));
    assert!(
        e.contains("none_*.bin") && e.contains("no shard files"),
        "{e}"
    );

    let mut toks = synth(0, 20);
    toks[13] = 50257;
    let sub = d.join("vocab");
    std::fs::create_dir(&sub).unwrap();
    write_shard(&sub.join("v_000000.bin"), &synth(1, 20)).unwrap();
    write_shard(&sub.join("v_000001.bin"), &toks).unwrap();
    // The bad shard is the second one: reported when the loader maps it, with the position.
    let mut l = Loader::new(sub.to_str().unwrap(), 1, 4, 4, GPT2_VOCAB).unwrap();
    let e = err_of(l.next_step());
    assert!(
        e.contains("v_000001.bin") && e.contains("50257 at position 13"),
        "{e}"
    );

    let p = d.join("small.bin");
    write_shard(&p, &synth(0, 12)).unwrap();
    let e = err_of(Loader::new(p.to_str().unwrap(), 2, 3, 2, GPT2_VOCAB));
    assert!(e.contains("small.bin") && e.contains("too small"), "{e}");

    assert!(!e.contains('\n'), "one line: {e}");
    assert_eq!(name(&p), "small.bin");
}

/// The loader counts its passes over the data: rank 0 wrapping to shard 0 starts a new epoch,
/// which the saved position carries across a resume.
#[test]
fn loader_counts_epochs_and_resumes_them() {
    let tmp = tempfile::tempdir().unwrap();
    write_shards(tmp.path(), &[40, 40]);
    let pat = tmp.path().display().to_string();
    // B·T = 8, world 1: windows at pos 0, 8, 16, 24 of each 40-token shard (from 24 the next
    // window would end past 32 + 8 + 1 > 40, so the rank moves on).
    let mut l = Loader::new(&pat, 2, 4, 1, GPT2_VOCAB).unwrap();
    let mut epochs = Vec::new();
    for _ in 0..9 {
        l.next_step().unwrap();
        epochs.push(l.epoch());
    }
    // Shard 0: 4 windows, shard 1: 4 windows, then shard 0 again.
    assert_eq!(epochs, vec![0, 0, 0, 0, 0, 0, 0, 1, 1]);
    let saved = l.position();
    assert_eq!(saved.epoch, 1);
    let mut again = Loader::new(&pat, 2, 4, 1, GPT2_VOCAB).unwrap();
    again.seek(saved).unwrap();
    assert_eq!(again.epoch(), 1);
    assert_eq!(again.next_step().unwrap(), l.next_step().unwrap());
}
