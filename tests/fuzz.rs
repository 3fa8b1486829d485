//! Property tests: truncations, bit flips, wrong shapes and random bytes thrown at every parser
//! that reads a user's files (shard headers, `state.json`, configs, checkpoints). Each case must
//! end in an error or a value, never a panic. The case count is bounded for CI
//! (`PROPTEST_CASES` raises it for a longer local soak).

use std::path::Path;

use proptest::prelude::*;
use speedrun::data::{read_header, Shard};
use speedrun::train::checkpoint;
use speedrun::train::config;

fn cases(n: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(n);
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A valid shard of `n` tokens: the 256 × i32 header (magic 20240520, version 1, count) + u16s.
fn shard_bytes(n: usize) -> Vec<u8> {
    speedrun::data::shard::shard_bytes(&(0..n).map(|i| (i % 50257) as u16).collect::<Vec<_>>())
        .unwrap()
}

fn mutate(mut bytes: Vec<u8>, cut: Option<usize>, flips: &[(usize, u8)]) -> Vec<u8> {
    for &(at, bit) in flips {
        if !bytes.is_empty() {
            let i = at % bytes.len();
            bytes[i] ^= 1 << (bit % 8);
        }
    }
    if let Some(c) = cut {
        bytes.truncate(c % (bytes.len() + 1));
    }
    bytes
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn shard_reader_never_panics(
        cut in proptest::option::of(any::<usize>()),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        random in proptest::collection::vec(any::<u8>(), 0..2048),
        use_random in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let bytes = if use_random { random } else { mutate(shard_bytes(300), cut, &flips) };
        let p = write(tmp.path(), "s.bin", &bytes);
        let header = read_header(&p);
        if let Ok(s) = Shard::open(&p) {
            // A shard that opens is consistent with its header and readable to the end.
            prop_assert_eq!(header.ok(), Some(s.len()));
            let _ = s.check_vocab(50257);
            let _ = s.min_max();
        }
    }

    #[test]
    fn resume_log_repair_never_panics(
        lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..12),
        step in 0usize..8,
        validated in any::<bool>(),
    ) {
        // Damaged lines among real ones: the log a resume keeps is always whole JSON lines.
        let tmp = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            bytes.extend_from_slice(format!(r#"{{"kind":"train","step":{i},"loss":1.0,"tokens":0}}"#).as_bytes());
            bytes.push(b'\n');
            bytes.extend_from_slice(l);
            bytes.push(b'\n');
        }
        let p = write(tmp.path(), "log.jsonl", &bytes);
        let progress = speedrun::train::progress::Progress {
            step,
            last_val_loss: validated.then_some(2.5),
            val_step: validated.then_some(step),
            ..Default::default()
        };
        speedrun::train::resume::prepare_log(&p, &progress, 0).unwrap();
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            prop_assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "{line}");
        }
    }

    #[test]
    fn config_parser_never_panics(
        key in "[a-z_.]{0,24}",
        value in "\\PC{0,16}",
        preset_noise in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = config::load("shakespeare-tiny", &[format!("{key}={value}")]);
        let tmp = tempfile::tempdir().unwrap();
        let p = write(tmp.path(), "c.toml", &preset_noise);
        let _ = config::load(p.to_str().unwrap(), &[]);
    }
}

/// One real checkpoint of the tiny model, written once for the checkpoint cases.
fn real_checkpoint() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let sets: Vec<String> = [
            "model.n_layer=1",
            "model.n_head=2",
            "model.n_embd=16",
            "model.seq_len=16",
            "train.batch_tokens=64",
            "train.micro_batch=4",
            "train.steps=1",
            "train.warmdown_steps=0",
            "train.val_every=1",
            "train.val_tokens=64",
            "train.val_micro_batch=4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut cfg = config::load("shakespeare-tiny", &sets).unwrap();
        cfg.data_root = Some(env!("CARGO_MANIFEST_DIR").into());
        let opts = speedrun::train::RunOptions {
            run_dir: tmp.path().join("run"),
            exec: speedrun::device::Exec::cpu(),
            resume: speedrun::train::Resume::No,
            init_from: None,
            stop_after: None,
            progress_bar: false,
        };
        speedrun::train::train(&cfg, &opts).unwrap();
        tmp
    })
    .path()
}

proptest! {
    #![proptest_config(cases(32))]

    #[test]
    fn damaged_checkpoints_are_errors_not_panics(
        file in 0usize..3,
        cut in proptest::option::of(any::<usize>()),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let src = checkpoint::latest(&real_checkpoint().join("run")).unwrap().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dst = tmp.path().join("step_000001");
        std::fs::create_dir_all(&dst).unwrap();
        let names = ["model.safetensors", "optim.safetensors", "state.json"];
        for n in names {
            std::fs::copy(src.join(n), dst.join(n)).unwrap();
        }
        let victim = dst.join(names[file]);
        let before = std::fs::read(&victim).unwrap();
        let bytes = mutate(before.clone(), cut, &flips);
        // A tensor file fails its checksum on any change; state.json on any change of its
        // content (its own checksum), though not on one of its layout (a cut final newline).
        let json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).ok();
        let changed = if file < 2 { bytes != before } else { json(&bytes) != json(&before) };
        std::fs::write(&victim, bytes).unwrap();
        let loaded = checkpoint::load(&dst, &candle_core::Device::Cpu);
        if changed {
            prop_assert!(loaded.is_err());
        }
    }
}
