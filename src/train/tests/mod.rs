//! Trainer tests on tiny shapes and the shipped tinyshakespeare shards.

use std::path::Path;

use super::checkpoint;
use super::config::{self, Config};
use super::trainer::{train, Resume, RunOptions};

mod diagnostics;
mod golden;
mod samples;

/// A 2-layer, width-32 model on the shipped shards: 6 steps of 256 tokens (2 micro-batches).
fn tiny(optim: &str, extra: &[&str]) -> Config {
    let mut sets: Vec<String> = [
        "model.n_layer=2",
        "model.n_head=2",
        "model.n_embd=32",
        "model.seq_len=32",
        "train.micro_batch=4",
        "train.batch_tokens=256",
        "train.steps=6",
        "train.warmdown_steps=2",
        "train.val_every=3",
        "train.val_tokens=256",
        "train.val_micro_batch=4",
        "train.checkpoint_every=0",
        "train.target_loss=10.8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.push(format!("optim.name=\"{optim}\""));
    sets.extend(extra.iter().map(|s| s.to_string()));
    config::load("shakespeare-tiny", &sets).unwrap()
}

pub(super) fn opts(dir: &Path, resume: Resume, stop_after: Option<usize>) -> RunOptions {
    RunOptions {
        run_dir: dir.to_path_buf(),
        exec: crate::device::Exec::cpu(),
        resume,
        init_from: None,
        stop_after,
        progress_bar: false,
    }
}

/// (kind, step, loss) of every log record, losses as exact bit patterns; records without a loss
/// (optimizer diagnostics) by their whole JSON text.
fn records(dir: &Path) -> Vec<(String, u64, String)> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let kind = v["kind"].as_str().unwrap().to_string();
            let loss = v
                .get("loss")
                .or_else(|| v.get("val_loss"))
                .and_then(|x| x.as_f64())
                .map(|x| x.to_bits().to_string())
                .unwrap_or_else(|| l.to_string());
            (kind, v["step"].as_u64().unwrap(), loss)
        })
        .collect()
}

/// A straight run and one stopped at step 3 and resumed write the same log, bit for bit: losses,
/// optimizer records, and a diag record on every step.
fn straight_vs_resumed(optim: &str, extra: &[&str]) {
    let mut sets = vec!["train.diagnostics_every=1"];
    sets.extend(extra);
    let cfg = tiny(optim, &sets);
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let sa = train(&cfg, &opts(&a, Resume::No, None)).unwrap();
    assert!(sa.finished);
    let half = train(&cfg, &opts(&b, Resume::No, Some(3))).unwrap();
    assert!(!half.finished);
    assert_eq!(half.final_step, 3);
    let sb = train(&cfg, &opts(&b, Resume::Latest, None)).unwrap();
    assert!(sb.finished);
    let (ra, rb) = (records(&a), records(&b));
    assert_eq!(ra.iter().filter(|r| r.0 == "train").count(), 6);
    assert_eq!(
        ra, rb,
        "{optim}: per-step losses differ between a straight and a resumed run"
    );
    assert_eq!(
        sa.final_val_loss.map(f64::to_bits),
        sb.final_val_loss.map(f64::to_bits)
    );
    diagnostics::check_run(&a, optim, &[1, 2, 3, 4, 5, 6]);
}

#[test]
fn resume_is_bit_exact_muon() {
    straight_vs_resumed("muon", &[]);
}

#[test]
fn resume_is_bit_exact_adamw() {
    straight_vs_resumed("adamw", &[]);
}

#[test]
fn resume_is_bit_exact_newton_muon() {
    // Refresh every 2 steps so the statistics and inverses cross the checkpoint at step 3, and
    // the diag records see refresh steps (1, 3, 5) and the steps between them.
    straight_vs_resumed("newton-muon", &["optim.newton_muon.refresh=2"]);
}

#[test]
fn resume_is_bit_exact_neon() {
    straight_vs_resumed("neon", &[]);
}

#[test]
fn resume_is_bit_exact_neon_fstar() {
    straight_vs_resumed("neon-fstar", &[]);
}

#[test]
fn loss_falls_and_target_is_logged() {
    let cfg = tiny(
        "muon",
        &[
            "train.steps=12",
            "train.warmdown_steps=3",
            "train.val_every=4",
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let s = train(&cfg, &opts(tmp.path(), Resume::No, None)).unwrap();
    let recs = records(tmp.path());
    let vals: Vec<f64> = recs
        .iter()
        .filter(|r| r.0 == "val")
        .map(|r| f64::from_bits(r.2.parse().unwrap()))
        .collect();
    assert_eq!(vals.len(), 4, "val at 0, 4, 8, 12");
    assert!(vals[3] < vals[0] - 0.05, "val loss did not fall: {vals:?}");
    // ln(50257) = 10.82: the target 10.8 is crossed early, and the summary agrees with the log.
    assert!(s.reached_target);
    let hit = recs
        .iter()
        .find(|r| r.0 == "target")
        .expect("target record");
    assert_eq!(Some(hit.1 as usize), s.target_step);
    assert_eq!(s.target_tokens, Some(hit.1 * 256));
    for f in ["config.toml", "meta.json", "summary.json", "log.jsonl"] {
        assert!(tmp.path().join(f).is_file(), "{f} missing");
    }
    // The saved config parses back to the same config.
    assert_eq!(
        config::from_toml_file(&tmp.path().join("config.toml")).unwrap(),
        cfg
    );
}

#[test]
fn refuses_to_overwrite_a_run_and_checks_config_on_resume() {
    let cfg = tiny(
        "muon",
        &[
            "train.steps=2",
            "train.val_every=2",
            "train.warmdown_steps=1",
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    train(&cfg, &opts(tmp.path(), Resume::No, None)).unwrap();
    let err = train(&cfg, &opts(tmp.path(), Resume::No, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    let other = tiny(
        "muon",
        &[
            "train.steps=2",
            "train.val_every=2",
            "train.warmdown_steps=1",
            "optim.muon.lr=0.01",
        ],
    );
    let err = format!(
        "{:#}",
        train(&other, &opts(tmp.path(), Resume::Latest, None)).unwrap_err()
    );
    assert!(err.contains("different config"), "{err}");
}

#[test]
fn incomplete_checkpoints_are_ignored_and_old_ones_pruned() {
    let cfg = tiny(
        "muon",
        &["train.checkpoint_every=1", "train.keep_checkpoints=2"],
    );
    let tmp = tempfile::tempdir().unwrap();
    train(&cfg, &opts(tmp.path(), Resume::No, Some(4))).unwrap();
    let root = checkpoint::checkpoints_dir(tmp.path());
    let steps: Vec<usize> = checkpoint::list(&root)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, vec![3, 4]);
    // A crash mid-write leaves a directory without state.json: never picked for resume.
    std::fs::create_dir_all(root.join("step_000005")).unwrap();
    std::fs::write(root.join("step_000005/model.safetensors"), b"partial").unwrap();
    let latest = checkpoint::latest(tmp.path()).unwrap().unwrap();
    assert!(latest.ends_with("step_000004"));
}

#[test]
fn bad_overrides_are_one_line_errors() {
    let e = config::load("shakespeare-tiny", &["train.stepz=3".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("stepz"), "{e}");
    let e = config::load("shakespeare-tiny", &["train.micro_batch=3".into()]).unwrap_err();
    assert!(
        format!("{e:#}").contains("train.micro_batch = 3 must divide"),
        "{e:#}"
    );
    let e = config::load("no-such-preset", &[]).unwrap_err().to_string();
    assert!(e.contains("presets:"), "{e}");
    let e = config::load("shakespeare-tiny", &["novalue".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("key=value"), "{e}");
}

#[test]
fn record4_preset_is_record4() {
    let c = config::load("speedrun-124m", &[]).unwrap();
    assert_eq!(c.model.num_params(), 123_532_032);
    assert_eq!(c.train.batch_tokens, 524_288);
    assert_eq!((c.train.ranks, c.train.rank_batch(1024).unwrap()), (8, 64));
    // One loader call of 64 sequences per rank and step, the first one trained twice
    // (train_gpt2.py:373, :432, :488-494).
    assert_eq!(c.train.call_batch(1024).unwrap(), 64);
    assert!(c.train.repeat_first_batch);
    assert_eq!(c.train.steps, 6200);
    assert_eq!((c.train.warmup_steps, c.train.warmdown_steps), (0, 1800));
    assert_eq!((c.train.val_every, c.train.val_tokens), (125, 10_485_760));
    assert_eq!(c.train.target_loss, 3.28);
    assert_eq!(c.optim.name, crate::optim::Method::Muon);
}
