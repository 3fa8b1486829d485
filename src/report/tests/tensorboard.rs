//! `speedrun export tensorboard`: the event file read back (framing and CRCs checked, protobufs
//! decoded) against the run's own log.jsonl, and byte-equal to TensorBoard's own writer.
use super::*;
use crate::report::tensorboard::{self as tb, Event, ScalarValue, What};
use prost::Message;
use std::collections::BTreeMap;

/// (step → tag → value) of an event file, after its version record.
fn read_events(path: &Path) -> BTreeMap<i64, BTreeMap<String, f32>> {
    let bytes = std::fs::read(path).unwrap();
    let records = tb::read_records(&bytes).unwrap();
    let first = Event::decode(records[0]).unwrap();
    assert_eq!(first.what, Some(What::FileVersion("brain.Event:2".into())));
    let mut out: BTreeMap<i64, BTreeMap<String, f32>> = BTreeMap::new();
    for r in &records[1..] {
        let e = Event::decode(*r).unwrap();
        let Some(What::Summary(s)) = e.what else {
            panic!("not a summary: {e:?}")
        };
        for v in s.value {
            let Some(ScalarValue::SimpleValue(x)) = v.value else {
                panic!("no value: {v:?}")
            };
            assert!(
                out.entry(e.step).or_default().insert(v.tag, x).is_none(),
                "a tag twice"
            );
        }
    }
    out
}

#[test]
fn event_file_bytes_equal_tensorboards_writer() {
    // scripts/golden_report.py: TensorBoard's RecordWriter with its own event_pb2 protobufs.
    const GOLDEN: &str = "1800000000000000a37f4b220900002040fc54d9411a0d627261696e2e4576656e743a32\
        2b353110300000000000000095f5d05f0900005040fc54d94110072a230a110a0a6c6f73732f747261696e\
        15000050400a0e0a076c722f6d756f6e15000000008eb1f590";
    let mut out = Vec::new();
    let version = Event {
        wall_time: 1_700_000_000.5,
        step: 0,
        what: Some(What::FileVersion("brain.Event:2".into())),
    };
    tb::push_record(&mut out, &version.encode_to_vec());
    let value = |tag: &str, x: f32| tb::SummaryValue {
        tag: tag.into(),
        value: Some(ScalarValue::SimpleValue(x)),
    };
    let summary = tb::Summary {
        value: vec![value("loss/train", 3.25), value("lr/muon", 0.0)],
    };
    let event = Event {
        wall_time: 1_700_000_001.25,
        step: 7,
        what: Some(What::Summary(summary)),
    };
    tb::push_record(&mut out, &event.encode_to_vec());
    let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, GOLDEN);
    // A flipped byte is caught by the CRC.
    out[20] ^= 1;
    assert!(tb::read_records(&out).is_err());
}

#[test]
fn exported_scalars_are_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("nm-s0");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(
        run.join("config.toml"),
        "seed = 0\n[optim]\nname = \"newton-muon\"\n",
    )
    .unwrap();
    std::fs::write(
        run.join("meta.json"),
        r#"{"started":"2026-12-01T10:00:00Z"}"#,
    )
    .unwrap();
    std::fs::write(
        run.join("log.jsonl"),
        concat!(
            r#"{"kind":"val","step":0,"val_loss":10.8,"tokens":0,"train_time_ms":0.0}"#, "\n",
            r#"{"kind":"train","step":1,"loss":10.7,"lrs":{"head":0.004,"newton_muon":0.0012},"tokens":2048,"step_ms":1500.0,"train_time_ms":0.0,"diag_ms":80.0}"#, "\n",
            r#"{"kind":"optim","step":1,"values":{"newton_muon.cholesky_failures":0.0,"newton_muon.ridge":0.2}}"#, "\n",
            r#"{"kind":"diag","step":1,"layers":{"h.0.mlp":{"grad_fro":1.5,"grad_nuc":9.0,"grad_spec":0.75,"stable_rank":4.0,"nuc_fro_ratio":36.0,"update_rms":0.002,"k_cond":17.5},"h.1.mlp":{"grad_fro":1.0,"grad_nuc":3.0,"grad_spec":1.0,"stable_rank":1.0,"nuc_fro_ratio":9.0}}}"#, "\n",
            r#"{"kind":"train","step":2,"loss":9.9,"lrs":{"head":0.004,"newton_muon":0.0012},"tokens":4096,"step_ms":1400.0,"train_time_ms":0.0}"#, "\n",
            r#"{"kind":"val","step":2,"val_loss":9.5,"tokens":4096,"train_time_ms":0.0}"#, "\n",
        ),
    )
    .unwrap();
    let mut runs = all_fixtures();
    runs.push(load_run(&run).unwrap());
    let out = dir.path().join("tb");
    let files = tb::export(&runs, &out).unwrap();
    assert_eq!(files.len(), 7);
    for (r, f) in runs.iter().zip(&files) {
        assert_eq!(f.parent().unwrap(), out.join(&r.name));
        assert!(f
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("events.out.tfevents."));
        let events = read_events(f);
        let text = std::fs::read_to_string(r.dir.join("log.jsonl")).unwrap();
        let mut expected = 0;
        for rec in text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        {
            let step = rec["step"].as_i64().unwrap();
            let at = |tag: &str| events.get(&step).and_then(|e| e.get(tag)).copied();
            let f32_of = |v: &serde_json::Value| v.as_f64().unwrap() as f32;
            match rec["kind"].as_str().unwrap() {
                "train" => {
                    assert_eq!(
                        at("loss/train"),
                        Some(f32_of(&rec["loss"])),
                        "{} {step}",
                        r.name
                    );
                    assert_eq!(at("tokens"), Some(f32_of(&rec["tokens"])));
                    assert_eq!(
                        at("time/train_time_s"),
                        Some((rec["train_time_ms"].as_f64().unwrap() / 1000.0) as f32)
                    );
                    for (g, lr) in rec["lrs"].as_object().unwrap() {
                        assert_eq!(
                            at(&format!("lr/{g}")),
                            Some(f32_of(lr)),
                            "{} {step} {g}",
                            r.name
                        );
                    }
                    expected += 4 + rec["lrs"].as_object().unwrap().len();
                    if let Some(ms) = rec.get("diag_ms") {
                        assert_eq!(at("time/diag_ms"), Some(f32_of(ms)));
                        expected += 1;
                    }
                }
                "diag" => {
                    // Every field of every matrix, and the two medians `compare` plots.
                    for (name, fields) in rec["layers"].as_object().unwrap() {
                        for (k, v) in fields.as_object().unwrap() {
                            assert_eq!(at(&format!("diag/{name}/{k}")), Some(f32_of(v)), "{k}");
                            expected += 1;
                        }
                    }
                    expected += 2;
                }
                "val" => {
                    assert_eq!(at("loss/val"), Some(f32_of(&rec["val_loss"])));
                    expected += 1;
                }
                "optim" => {
                    for (k, v) in rec["values"].as_object().unwrap() {
                        assert_eq!(at(&format!("optim/{k}")), Some(f32_of(v)), "{k}");
                        expected += 1;
                    }
                }
                _ => {}
            }
        }
        // Nothing else: every scalar in the file came from a record above (step_ms once per train).
        let written: usize = events.values().map(|e| e.len()).sum();
        assert_eq!(written, expected, "{}", r.name);
    }
    // The zero-valued diagnostic is there (a oneof, not a dropped proto3 default).
    let nm = read_events(&files[6]);
    assert_eq!(nm[&1]["optim/newton_muon.cholesky_failures"], 0.0);
    assert_eq!(nm[&1]["diag/median/nuc_fro_ratio"], 22.5);
    assert_eq!(nm[&1]["diag/median/stable_rank"], 2.5);
    // Exporting again replaces the file rather than adding a second one.
    tb::export(&runs, &out).unwrap();
    assert_eq!(std::fs::read_dir(out.join("nm-s0")).unwrap().count(), 1);
    // Two runs of one name cannot share a log directory.
    let e = format!(
        "{:#}",
        tb::export(&[runs[0].clone(), runs[0].clone()], &out).unwrap_err()
    );
    assert!(e.contains("two runs named muon_s0"), "{e}");
}
