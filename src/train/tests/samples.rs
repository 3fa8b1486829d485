//! Samples while training (`train.sample_every`): when they are written, that they are what the
//! final weights write, that they change nothing in the run, and the config fields.

use super::*;
use crate::model::Gpt;
use crate::train::samples::RunSamples;

/// The sample records of a run's log, as JSON.
fn samples(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "sample")
        .collect()
}

#[test]
fn every_nth_validation_and_the_last_write_the_final_weights_greedy_text() {
    let extra = [
        "train.steps=5",
        "train.val_every=1",
        "train.warmdown_steps=1",
        "train.sample_every=2",
        "train.sample_prompt=\"ROMEO:\"",
        "train.sample_tokens=40",
    ];
    let cfg = tiny("muon", &extra);
    let tmp = tempfile::tempdir().unwrap();
    train(&cfg, &opts(tmp.path(), Resume::No, None)).unwrap();
    let recs = samples(tmp.path());
    let steps: Vec<u64> = recs.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(
        steps,
        [0, 2, 4, 5],
        "validations 0..=5: every 2nd, and the last"
    );
    let tok = crate::data::tokenize::load_tokenizer(None).unwrap();
    for r in &recs {
        assert_eq!(r["prompt"], "ROMEO:");
        let ids: Vec<u32> = serde_json::from_value(r["tokens"].clone()).unwrap();
        // 40 tokens after a 3-token prompt cross the 32-token context: the window slid.
        assert_eq!(ids.len(), 40);
        assert_eq!(r["text"], tok.decode(&ids, false).unwrap());
    }
    // The last sample is what the final checkpoint writes.
    let ckpt = checkpoint::latest(tmp.path()).unwrap().unwrap();
    let dev = candle_core::Device::Cpu;
    let model = Gpt::from_safetensors(&cfg.model, &ckpt.join("model.safetensors"), &dev).unwrap();
    let again = RunSamples::new(&cfg)
        .unwrap()
        .unwrap()
        .sample(&model, 5)
        .unwrap();
    assert_eq!(serde_json::to_value(&again).unwrap(), recs[3]);
    // The training steps moved the text.
    assert_ne!(recs[0]["tokens"], recs[3]["tokens"]);
}

#[test]
fn samples_change_nothing_in_the_run() {
    let base = ["train.sample_every=0"];
    let on = ["train.sample_every=1", "train.sample_tokens=8"];
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    train(&tiny("adamw", &base), &opts(&a, Resume::No, None)).unwrap();
    train(&tiny("adamw", &on), &opts(&b, Resume::No, None)).unwrap();
    assert!(samples(&a).is_empty());
    assert_eq!(samples(&b).len(), 3, "validations at 0, 3, 6");
    let losses =
        |d: &Path| -> Vec<_> { records(d).into_iter().filter(|r| r.0 != "sample").collect() };
    assert_eq!(losses(&a), losses(&b));
}

/// The resume hash of the default preset before the sample fields existed, printed by
/// `config::load("shakespeare-tiny", &[]).unwrap().resume_hash()` at commit 6c4ca96 (the preset
/// with its repeated first batch; 74df7e06038db53b at 6edaf04, before that).
const HASH_BEFORE_SAMPLES: &str = "6dc51d181bc00bd2";

#[test]
fn sample_fields_stay_out_of_the_resume_hash() {
    // The preset as it was: its runs still resume.
    let preset = include_str!("../../../configs/shakespeare-tiny.toml");
    let old: String = preset
        .lines()
        .filter(|l| !l.starts_with("sample_"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(old, preset);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("old.toml");
    std::fs::write(&path, old).unwrap();
    let cfg = config::load(path.to_str().unwrap(), &[]).unwrap();
    assert_eq!(cfg.train.sample_every, 0);
    assert_eq!(cfg.resume_hash(), HASH_BEFORE_SAMPLES);
    // Turning samples on or changing them keeps the hash.
    let on = config::load("shakespeare-tiny", &["train.sample_tokens=7".into()]).unwrap();
    assert_eq!(on.resume_hash(), HASH_BEFORE_SAMPLES);
    assert!(cfg.differing_fields(&on).is_empty());
}

#[test]
fn a_prompt_that_does_not_fit_stops_the_run_before_it_starts() {
    let long = format!("train.sample_prompt=\"{}\"", "to be or not ".repeat(20));
    let cases: [(&str, &str); 2] = [
        (
            &long,
            "tokens, longer than the model's context (model.seq_len = 32)",
        ),
        ("train.sample_tokens=0", "train.sample_tokens must be > 0"),
    ];
    for (set, want) in cases {
        let cfg = tiny("muon", &["train.sample_every=1", set]);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r");
        let e = format!(
            "{:#}",
            train(&cfg, &opts(&dir, Resume::No, None)).unwrap_err()
        );
        assert!(e.contains(want), "{e}");
        assert!(!dir.exists(), "a failed start leaves no run directory");
        assert!(super::super::trainer::preflight(&cfg).is_err());
    }
}
