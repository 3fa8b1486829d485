//! Record 4's and NM-1's training loops, step by step, against `scripts/golden_train.py`
//! (scripts/record4_ref.py, written from the records' own scripts and checked there to
//! reproduce them exactly when they run on the CPU): the repeated first batch, the record's
//! per-rank loaders across a shard boundary and a wrap, Newton-Muon's refresh phase, and both
//! logged train losses, over 48 steps; and the same numbers after a resume before the repeat
//! and after the first refresh.
//!
//! `.venv/bin/python scripts/golden_train.py > tests/fixtures/golden_train/expected.txt`
//! (torch 2.15.0 CPU, fp32) printed, among its 165 lines (case, kind, step, mean, last):
//!   muon_w2 val 0 6.419691086e+00
//!   muon_w2 train 1 6.362634659e+00 6.455018520e+00
//!   muon_w2 train 2 5.268732548e+00 5.304080963e+00
//!   muon_w2 val 48 3.734587193e+00
//!   muon_w1 val 48 3.759937763e+00
//!   nm_w1 val 48 3.771831036e+00
//! The test reads that file whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::opts;
use crate::train::config::{self, Config};
use crate::train::trainer::{train, Resume};

fn fixture_dir() -> PathBuf {
    fixtures("golden_train")
}

fn fixtures(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// (kind, step) → values, of one case of the golden printout `dir/expected.txt` (`#` lines are
/// its header).
fn expected_in(dir: &Path, case: &str) -> BTreeMap<(String, u64), Vec<f64>> {
    let text = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f[0] == case)
        .map(|f| {
            let vals = f[3..].iter().map(|v| v.parse().unwrap()).collect();
            ((f[1].to_string(), f[2].parse().unwrap()), vals)
        })
        .collect()
}

/// The golden script's case as a speedrun config: the same model, shards, batch layout,
/// schedule and learning rates.
fn golden_cfg(extra: &[&str]) -> Config {
    let dir = fixture_dir();
    let mut sets: Vec<String> = [
        "model.vocab_size=512",
        "model.n_layer=2",
        "model.n_head=2",
        "model.n_embd=32",
        "model.seq_len=32",
        "train.batch_tokens=128",
        "train.repeat_first_batch=true",
        "train.steps=48",
        "train.warmdown_steps=16",
        "train.val_every=8",
        "train.val_tokens=256",
        "train.val_micro_batch=2",
        "train.checkpoint_every=0",
        "train.diagnostics_every=0",
        "train.sample_every=0",
        "optim.head.lr=0.02",
        "optim.muon.lr=0.002",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.push(format!(
        "data.train=\"{}/golden_train_*.bin\"",
        dir.display()
    ));
    sets.push(format!("data.val=\"{}/golden_val_*.bin\"", dir.display()));
    sets.extend(extra.iter().map(|s| s.to_string()));
    config::load("shakespeare-tiny", &sets).unwrap()
}

/// (kind, step) → [loss, loss_rank0_last] of train records and [val_loss] of val records.
fn logged(dir: &Path) -> BTreeMap<(String, u64), Vec<f64>> {
    let text = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    text.lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let kind = v["kind"].as_str().unwrap().to_string();
            let vals = match kind.as_str() {
                "train" => vec![v["loss"].as_f64()?, v["loss_rank0_last"].as_f64()?],
                "val" => vec![v["val_loss"].as_f64()?],
                _ => return None,
            };
            Some(((kind, v["step"].as_u64().unwrap()), vals))
        })
        .collect()
}

/// Largest relative difference between the run's records and the golden ones of
/// `golden/expected.txt`; every golden record must be in the log and the log must hold no
/// other. `lines` is the case's number of printout lines.
fn worst_in(golden: &Path, case: &str, lines: usize, dir: &Path) -> f64 {
    let (want, mut got) = (expected_in(golden, case), logged(dir));
    // Track 3's printout has the mean train loss only (its script logs none).
    for (k, v) in got.iter_mut() {
        if let Some(w) = want.get(k) {
            v.truncate(w.len());
        }
    }
    assert_eq!(want.len(), lines, "{case}: lines in the printout");
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "{case}: the run logs the golden steps"
    );
    let mut worst = 0f64;
    for (k, w) in &want {
        for (a, b) in got[k].iter().zip(w) {
            worst = worst.max((a - b).abs() / b.abs());
        }
    }
    worst
}

fn worst(case: &str, dir: &Path) -> f64 {
    worst_in(&fixture_dir(), case, 48 + 7, dir)
}

/// Train `cfg` from the golden init into `dir`, stopping after `stop` steps when given.
fn run(cfg: &Config, dir: &Path, resume: Resume, stop: Option<usize>) {
    run_from(&fixture_dir(), cfg, dir, resume, stop)
}

/// [`run`] from `golden/init.safetensors`.
fn run_from(golden: &Path, cfg: &Config, dir: &Path, resume: Resume, stop: Option<usize>) {
    let mut o = opts(dir, resume, stop);
    if o.resume == Resume::No {
        o.init_from = Some(golden.join("init.safetensors"));
    }
    train(cfg, &o).unwrap();
}

/// Agreement with the golden losses under Muon: fp32 sums run in other orders here than in
/// PyTorch, and 48 steps amplify that rounding (measured worst 2.9e-7 and 5.2e-7). Without the
/// repeated first batch the first case is 0.65 off; with NM-1's refresh one step late, 4.3e-2.
const TOL: f64 = 2e-6;
/// Under Newton-Muon the Cholesky factorisation accumulates in f64 here and in fp32 in PyTorch
/// (docs/optimizers.md): measured worst 4.8e-6.
const TOL_NM: f64 = 1e-5;

fn check_case(case: &str, sets: &[&str], tol: f64) {
    let cfg = golden_cfg(sets);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(case);
    run(&cfg, &dir, Resume::No, None);
    let w = worst(case, &dir);
    println!("{case}: worst relative difference to PyTorch {w:.2e}");
    assert!(w < tol, "{case}: {w:.2e}");
}

/// Record 4's layout: 2 ranks of one call of 2 sequences, each split into micro-batches of 1.
#[test]
fn golden_record4_two_ranks() {
    check_case(
        "muon_w2",
        &[
            "train.ranks=2",
            "train.device_batch=0",
            "train.micro_batch=1",
        ],
        TOL,
    );
}

/// One process, 4 calls of 1 sequence a step: the repeat shifts the stream by one call.
#[test]
fn golden_record4_accumulated_calls() {
    check_case(
        "muon_w1",
        &["train.device_batch=1", "train.micro_batch=1"],
        TOL,
    );
}

const NM_SETS: [&str; 6] = [
    "optim.name=\"newton-muon\"",
    "optim.newton_muon.lr=0.004",
    "optim.newton_muon.head_lr=0.04",
    "optim.newton_muon.refresh=8",
    "train.device_batch=2",
    "train.micro_batch=2",
];

/// NM-1's layout and refresh phase (first refresh at step 7), straight, and resumed from a
/// checkpoint before the first step (the repeat still to come) and from one after the first
/// refresh: the resumed logs equal the straight run's bit for bit, and that one PyTorch's.
#[test]
fn golden_nm1_straight_and_resumed() {
    let cfg = golden_cfg(&NM_SETS);
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    run(&cfg, &straight, Resume::No, None);
    let w = worst("nm_w1", &straight);
    assert!(w < TOL_NM, "nm_w1: {w:.2e}");
    let bits = |d: &Path| -> Vec<((String, u64), Vec<u64>)> {
        logged(d)
            .into_iter()
            .map(|(k, v)| (k, v.iter().map(|x| x.to_bits()).collect()))
            .collect()
    };
    for stop in [0, 9] {
        let dir = tmp.path().join(format!("stop{stop}"));
        run(&cfg, &dir, Resume::No, Some(stop));
        run(&cfg, &dir, Resume::Latest, None);
        assert_eq!(bits(&dir), bits(&straight), "resumed at step {stop}");
    }
}

/// Track 3's tiny golden case as a speedrun config: `track3-tiny` at the script's shapes,
/// shards, batch layout, schedule and cadence, with `extra` on top (the method).
fn track3_cfg(extra: &[&str]) -> Config {
    let data = fixture_dir();
    let mut sets: Vec<String> = [
        "model.vocab_size=512",
        "model.n_layer=2",
        "model.n_head=2",
        "model.n_embd=64",
        "model.head_dim=32",
        "model.seq_len=32",
        "train.batch_tokens=128",
        "train.micro_batch=2",
        "train.val_every=4",
        "train.val_every_late=2",
        "train.val_tokens=256",
        "train.val_micro_batch=2",
        "train.checkpoint_every=0",
        "train.diagnostics_every=0",
        "train.sample_every=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.push(format!(
        "data.train=\"{}/golden_train_*.bin\"",
        data.display()
    ));
    sets.push(format!("data.val=\"{}/golden_val_*.bin\"", data.display()));
    sets.extend(extra.iter().map(|s| s.to_string()));
    config::load("track3-tiny", &sets).unwrap()
}

// `.venv/bin/python scripts/golden_track3.py > tests/fixtures/golden_track3/expected.txt`
// (scripts/track3_ref.py, written from Track 3's scripts and checked there to reproduce them on
// the CPU to the last printed digit; torch 2.15.0 CPU, fp32) printed, among its 63 lines:
//   muon36 val 0 6.238324642e+00      (ln 512: the head starts at zero)
//   muon36 train 2 6.169682503e+00
//   muon36 val 16 4.744065285e+00
//   nm15 val 16 5.038603306e+00
//   adam2 val 16 5.068438053e+00
/// Track 3 (results #36, #15 and #2 as `track3-tiny`'s methods) against the golden printout over
/// 16 steps, from its init: the Track-3 model, the summed loss, the aux AdamW groups, Muon's
/// EMA momentum and 12-step cubic Newton–Schulz, per-family rates, Newton-Muon's shared q/k/v
/// statistic refreshed every 2 steps, result #2's warmup on every group, the generator, the
/// cooldown schedule and the late validation cadence. Measured worst relative differences:
/// muon36 1.2e-7, nm15 8.9e-8 (1e-6 allowed); adam2 7.7e-6 (2e-5 allowed): Adam normalises
/// each element, so the last-digit differences of a near-zero gradient entry become full-size
/// steps, which Newton–Schulz would have averaged away. Every mistake the golden script's
/// author measured moves the losses more (the smallest, Muon decaying with the unscheduled
/// lr, 7.2e-5; result #2's warmup on the block group only, 2.7e-2).
#[test]
fn golden_track3_methods() {
    let golden = fixtures("golden_track3");
    let tmp = tempfile::tempdir().unwrap();
    for (case, sets, tol) in [
        ("muon36", vec!["optim.name=\"muon\""], 1e-6),
        (
            "nm15",
            vec!["optim.name=\"newton-muon\"", "optim.newton_muon.refresh=2"],
            1e-6,
        ),
        (
            "adam2",
            vec!["optim.name=\"adamw\"", "train.warmup_steps=4"],
            2e-5,
        ),
    ] {
        let mut sets = sets;
        sets.push("train.steps=16");
        let cfg = track3_cfg(&sets);
        let dir = tmp.path().join(case);
        run_from(&golden, &cfg, &dir, Resume::No, None);
        let w = worst_in(&golden, case, 16 + 5, &dir);
        println!("{case}: worst relative difference to PyTorch {w:.2e}");
        assert!(w < tol, "{case}: {w:.2e}");
    }
}
