//! Shards and loader: round trip, malformed inputs, and the record-4 window order checked against
//! an independent reimplementation on synthetic shards.
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

/// Reference for record4.md's loader, written as a plain walk over (shard, base) written
/// independently of loader.rs: every step yields W windows of B·T+1 tokens starting at
/// base + r·B·T; the next base is base + B·T·W unless that leaves fewer than B·T·W + 1 tokens, in
/// which case the next shard (cyclically) starts at 0.
fn reference(shards: &[Vec<u16>], bt: usize, w: usize, steps: usize) -> Vec<Vec<Window>> {
    let mut out = Vec::new();
    let (mut s, mut base) = (0usize, 0usize);
    for _ in 0..steps {
        let mut step = Vec::new();
        for r in 0..w {
            let start = base + r * bt;
            let win: Vec<u32> = shards[s][start..=start + bt]
                .iter()
                .map(|&x| x as u32)
                .collect();
            step.push(Window {
                inputs: win[..bt].to_vec(),
                targets: win[1..].to_vec(),
            });
        }
        out.push(step);
        let next = base + bt * w;
        if next + bt * w + 1 > shards[s].len() {
            s = (s + 1) % shards.len();
            base = 0;
        } else {
            base = next;
        }
    }
    out
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
fn loader_matches_reference_across_boundaries_and_wraparound() {
    let dir = tempfile::tempdir().unwrap();
    // Lengths chosen so steps end exactly on a boundary (49 = 4·12 + 1), leave a remainder (50,
    // 37) and fit a single step (13).
    let lens = [49, 50, 13, 37];
    let shards = write_shards(dir.path(), &lens);
    for (b, t, w) in [(2, 3, 2), (1, 4, 3), (3, 2, 1), (1, 1, 12)] {
        let pattern = dir.path().to_str().unwrap();
        let mut l = Loader::new(pattern, b, t, w, GPT2_VOCAB).unwrap();
        let steps = 40; // several full passes: exercises wrap-around to shard 0
        let want = reference(&shards, b * t, w, steps);
        for (i, ws) in want.iter().enumerate() {
            let got = l.next_step().unwrap();
            assert_eq!(&got, ws, "B={b} T={t} W={w} step {i}");
        }
    }
}

#[test]
fn loader_seek_resume_reset_and_budget() {
    let dir = tempfile::tempdir().unwrap();
    let shards = write_shards(dir.path(), &[49, 50, 37]);
    let pattern = format!("{}/x_train_*.bin", dir.path().display());
    let (b, t, w) = (2, 3, 2);
    let want = reference(&shards, b * t, w, 30);
    let mut l = Loader::new(&pattern, b, t, w, GPT2_VOCAB).unwrap();
    for ws in &want[..7] {
        assert_eq!(&l.next_step().unwrap(), ws);
    }
    // Save, serialise, resume in a fresh loader: the continuation is identical.
    let pos = l.position();
    // Shard 0 (49 tokens) holds 4 steps of 12 (+1); shard 1 (50) holds 4 too, so 7 steps end at
    // shard 1, base 36.
    assert_eq!(pos, LoaderPos { shard: 1, pos: 36 });
    let json = serde_json::to_string(&pos).unwrap();
    let mut l2 = Loader::new(&pattern, b, t, w, GPT2_VOCAB).unwrap();
    l2.seek(serde_json::from_str(&json).unwrap()).unwrap();
    for ws in &want[7..30] {
        assert_eq!(&l2.next_step().unwrap(), ws);
        assert_eq!(&l.next_step().unwrap(), ws);
    }
    l.reset().unwrap();
    assert_eq!(l.position(), LoaderPos { shard: 0, pos: 0 });
    assert_eq!(&l.next_step().unwrap(), &want[0]);
    // Mid-shard seek.
    l.seek(LoaderPos { shard: 1, pos: 12 }).unwrap();
    assert_eq!(&l.next_step().unwrap(), &want[5]);
    // Out-of-range seeks are errors, not panics.
    assert!(err_of(l.seek(LoaderPos { shard: 3, pos: 0 })).contains("shard 3 of 3"));
    assert!(err_of(l.seek(LoaderPos { shard: 2, pos: 30 })).contains("x_train_000002.bin"));
    assert_eq!(l.num_tokens(), 49);
    assert_eq!(l.total_tokens(), 136);
    // Budget: 4 steps fit shard 0 exactly; 5 need shard 1; 12 steps exceed the data.
    assert_eq!(l.steps_for_tokens(48).unwrap(), 4);
    assert_eq!(l.steps_for_tokens(60).unwrap(), 5);
    assert!(err_of(l.steps_for_tokens(50)).contains("multiple"));
    assert!(err_of(l.steps_for_tokens(12 * 12)).contains("needs more"));
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

    for e in [e] {
        assert!(!e.contains('\n'), "one line: {e}");
    }
    assert_eq!(name(&p), "small.bin");
}
