//! Tests of `speedrun compare` on the hand-made fixture runs in tests/fixtures/runs/:
//! muon_s0..2 (same config, seeds 0..2, target 3.28 reached at steps 150/200/150),
//! adamw_s0..1 (never reach 3.28), neon_live (unfinished: no summary.json, partial last line).
use super::*;
use crate::cli::compare as cli;
use std::path::{Path, PathBuf};

mod charts;
mod page;
mod records;
mod render;
mod stats;
mod tensorboard;
mod watch;

use html::HtmlOpts;

fn render(runs: &[RunRecord], opts: &CompareOpts) -> String {
    Comparison::new(runs, opts.target).render(opts.format)
}

fn html_opts() -> HtmlOpts {
    HtmlOpts {
        smooth: plot::DEFAULT_SMOOTH,
        x: XAxis::Step,
        log_y: false,
        refresh: None,
    }
}

fn render_html(runs: &[RunRecord], target: Option<f64>) -> anyhow::Result<String> {
    Comparison::new(runs, target).html(&html_opts())
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs")
}

pub(super) fn fixture(name: &str) -> RunRecord {
    load_run(&fixtures().join(name)).unwrap()
}

/// The fixture runs, in the order the tests load them.
const FIXTURE_NAMES: [&str; 6] = [
    "muon_s0",
    "muon_s1",
    "muon_s2",
    "adamw_s0",
    "adamw_s1",
    "neon_live",
];

fn all_fixture_dirs() -> Vec<PathBuf> {
    FIXTURE_NAMES.iter().map(|n| fixtures().join(n)).collect()
}

pub(super) fn all_fixtures() -> Vec<RunRecord> {
    all_fixture_dirs()
        .iter()
        .map(|d| load_run(d).unwrap())
        .collect()
}

pub(super) fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

/// The raw JSON records of a fixture's log, parsed independently of `load.rs` (skipping an
/// unparsable last line), so table numbers are checked against the file itself.
fn raw_log(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(fixtures().join(name).join("log.jsonl")).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn table_numbers_match_the_jsonl() {
    for name in FIXTURE_NAMES {
        let row = RunRow::from_run(&fixture(name), Some(3.28));
        let log = raw_log(name);
        let vals: Vec<&serde_json::Value> = log.iter().filter(|v| v["kind"] == "val").collect();
        let hit = vals
            .iter()
            .find(|v| v["val_loss"].as_f64().unwrap() <= 3.28);
        assert_eq!(row.reached, hit.is_some(), "{name}");
        assert_eq!(
            row.target_step,
            hit.map(|v| v["step"].as_u64().unwrap()),
            "{name}"
        );
        assert_eq!(
            row.target_tokens,
            hit.map(|v| v["tokens"].as_u64().unwrap()),
            "{name}"
        );
        assert_eq!(
            row.target_train_time_ms,
            hit.map(|v| v["train_time_ms"].as_f64().unwrap()),
            "{name}"
        );
        assert_eq!(
            row.final_val_loss,
            vals.last().unwrap()["val_loss"].as_f64(),
            "{name}"
        );
        // The trainer's own "target" record (3.28 is each fixture's own target) agrees too.
        let own = log.iter().find(|v| v["kind"] == "target");
        assert_eq!(
            row.target_step,
            own.map(|v| v["step"].as_u64().unwrap()),
            "{name}"
        );
    }
    // Hand-checked values for muon_s0: val 3.27 at step 150 (first ≤ 3.28), 150·16384 tokens,
    // timed train records step 20 (8100 ms) … step 200 (153000 ms): 144900 ms / 180 steps.
    let r = RunRow::from_run(&fixture("muon_s0"), None);
    assert_eq!(r.target, Some(3.28));
    assert_eq!(
        (r.target_step, r.target_tokens, r.target_train_time_ms),
        (Some(150), Some(2_457_600), Some(112_700.0))
    );
    assert_eq!((r.final_step, r.final_val_loss), (Some(200), Some(3.10)));
    assert_eq!(r.step_avg_ms, Some(805.0));
    assert!(close(r.tok_per_s.unwrap(), 16384.0 * 1000.0 / 805.0, 1e-12));
    assert_eq!(
        r.hparams,
        "muon.lr=0.00036; head.lr=0.0036; steps=200; batch_tokens=16384"
    );
    assert_eq!(
        (r.optim.as_str(), r.device.as_str()),
        ("muon", "cpu (2 threads)")
    );
}

#[test]
fn recomputed_rows_agree_with_finished_summaries() {
    for run in all_fixtures().iter().filter(|r| r.finished) {
        let s = run.summary.clone().unwrap();
        let r = RunRow::from_run(run, None);
        assert_eq!(r.reached, s.reached_target, "{}", r.name);
        assert_eq!(r.target_step, s.target_step.map(|v| v as u64), "{}", r.name);
        assert_eq!(r.target_tokens, s.target_tokens, "{}", r.name);
        assert_eq!(r.target_train_time_ms, s.target_train_time_ms, "{}", r.name);
        assert_eq!(r.final_val_loss, s.final_val_loss, "{}", r.name);
        assert_eq!(r.final_step, Some(s.final_step as u64), "{}", r.name);
        assert!(close(r.step_avg_ms.unwrap(), s.step_avg_ms, 1e-12));
        assert!(close(r.tok_per_s.unwrap(), s.tok_per_s, 1e-12));
    }
}

#[test]
fn unfinished_run_with_partial_last_line() {
    let run = fixture("neon_live");
    assert!(run.summary.is_none() && !run.finished);
    // The last line of the file is `{"kind":"train","step":130,"loss":3.9` (cut mid-append).
    let text = std::fs::read_to_string(run.dir.join("log.jsonl")).unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(text.lines().last().unwrap()).is_err());
    assert_eq!(run.train.last().unwrap().step, 120);
    assert_eq!(run.val.len(), 3);
    let r = RunRow::from_run(&run, None);
    assert_eq!(
        r.target,
        Some(3.28),
        "target comes from config.toml without a summary"
    );
    assert!(!r.reached && !r.finished);
    assert_eq!((r.final_step, r.final_val_loss), (Some(120), Some(3.60)));
    // Timed span: step 20 (9100 ms) → step 120 (99550 ms).
    assert!(close(
        r.step_avg_ms.unwrap(),
        (99550.0 - 9100.0) / 100.0,
        1e-12
    ));
    // No process holds its lock and it never said how it ended: it died.
    assert_eq!(run.status, Status::Crashed);
    let md = render(&[run], &CompareOpts::default());
    assert!(md.contains("| crashed |"), "{md}");
    assert!(
        md.contains("| neon_live | neon | 1 (1 unfinished) |"),
        "{md}"
    );
}

#[test]
fn the_status_column_tells_running_stopped_interrupted_and_crashed_apart() {
    use crate::train::run_dir::RunStatus;
    let tmp = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        for f in ["config.toml", "log.jsonl", "meta.json", "summary.json"] {
            std::fs::copy(fixtures().join("muon_s0").join(f), dir.join(f)).unwrap();
        }
        dir
    };
    let with_status = |name: &str, status: Option<RunStatus>| {
        let dir = copy(name);
        let mut s = crate::train::run_dir::read_summary(&dir).unwrap().unwrap();
        s.finished = status == Some(RunStatus::Finished);
        s.status = status;
        crate::fsutil::write_json(&dir.join("summary.json"), &s).unwrap();
        load_run(&dir).unwrap().status
    };
    assert_eq!(
        with_status("f", Some(RunStatus::Finished)),
        Status::Finished
    );
    assert_eq!(with_status("s", Some(RunStatus::Stopped)), Status::Stopped);
    assert_eq!(
        with_status("i", Some(RunStatus::Interrupted)),
        Status::Interrupted
    );
    assert_eq!(with_status("c", Some(RunStatus::Running)), Status::Crashed);
    assert_eq!(with_status("old", None), Status::Ended);
    // "running" in the summary and the lock held: a live run.
    let live = copy("live");
    let lock = crate::train::lock::RunLock::acquire(&live).unwrap();
    assert_eq!(load_run(&live).unwrap().status, Status::Running);
    drop(lock);
}

#[test]
fn bad_line_in_the_middle_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"kind":"val","step":0,"val_loss":10.8,"tokens":0,"train_time_ms":0.0}"#;
    std::fs::write(
        dir.path().join("log.jsonl"),
        format!("{good}\n{{oops\n{good}\n"),
    )
    .unwrap();
    let e = format!("{:#}", load_run(dir.path()).unwrap_err());
    assert!(e.contains("log.jsonl:2: malformed JSON"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
    // A val record missing its loss is named as such.
    std::fs::write(
        dir.path().join("log.jsonl"),
        "{\"kind\":\"val\",\"step\":3}\n{}\n",
    )
    .unwrap();
    let e = format!("{:#}", load_run(dir.path()).unwrap_err());
    assert!(e.contains("log.jsonl:1: bad val record"), "{e}");
}

#[test]
fn malformed_files_give_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let e = format!("{:#}", load_run(p).unwrap_err());
    assert!(e.contains("not a run directory"), "{e}");
    std::fs::write(p.join("log.jsonl"), "").unwrap();
    std::fs::write(p.join("config.toml"), "name = \n[optim\n").unwrap();
    let e = format!("{:#}", load_run(p).unwrap_err());
    assert!(
        e.contains("config.toml: malformed TOML") && !e.contains('\n'),
        "{e}"
    );
    std::fs::write(p.join("config.toml"), "name = \"x\"\n").unwrap();
    std::fs::write(p.join("summary.json"), "{\"finished\": 3}").unwrap();
    let e = format!("{:#}", load_run(p).unwrap_err());
    assert!(
        e.contains("summary.json: malformed summary") && !e.contains('\n'),
        "{e}"
    );
    std::fs::write(p.join("summary.json"), "{}").unwrap();
    std::fs::write(p.join("meta.json"), "[").unwrap();
    let e = format!("{:#}", load_run(p).unwrap_err());
    assert!(
        e.contains("meta.json: malformed JSON") && !e.contains('\n'),
        "{e}"
    );
    let e = format!("{:#}", load_run(&p.join("nope")).unwrap_err());
    assert!(e.contains("nope: not a directory"), "{e}");
}

#[test]
fn target_override_recomputes_from_val_records() {
    let s1 = fixture("muon_s1"); // vals 10.83, 4.05, 3.40, 3.30, 3.12 at steps 0..200 by 50
    assert_eq!(RunRow::from_run(&s1, None).target_step, Some(200));
    let r = RunRow::from_run(&s1, Some(3.5));
    assert_eq!((r.target, r.target_step), (Some(3.5), Some(100)));
    assert_eq!(r.target_tokens, Some(100 * 16384));
    // Equality counts as reached (≤, as the record's rule).
    assert_eq!(RunRow::from_run(&s1, Some(3.30)).target_step, Some(150));
    assert!(!RunRow::from_run(&s1, Some(3.0)).reached);
    // adamw never reaches its own 3.28, but reaches 3.4 at step 200.
    let a = fixture("adamw_s1");
    assert!(!RunRow::from_run(&a, None).reached);
    assert_eq!(RunRow::from_run(&a, Some(3.4)).target_step, Some(200));
}

#[test]
fn not_reached_runs_are_marked_not_dropped() {
    let runs = all_fixtures();
    let md = render(&runs, &CompareOpts::default());
    for name in ["adamw_s0", "adamw_s1", "neon_live"] {
        let line = md
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap();
        assert_eq!(line.matches("not reached").count(), 3, "{line}");
    }
    let line = md.lines().find(|l| l.starts_with("| muon_s0 |")).unwrap();
    assert!(
        !line.contains("not reached") && line.contains("| 150 | 2457600 | 112.7 |"),
        "{line}"
    );
}

#[test]
fn diverged_run_with_null_loss_is_kept_and_left_out_of_loss_stats() {
    // serde_json writes a NaN loss as null; the run must load, show, plot and not poison stats.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("neon_s0");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(
        run.join("config.toml"),
        "name = \"neon_s0\"\nseed = 0\n[optim]\nname = \"neon\"\n",
    )
    .unwrap();
    std::fs::write(
        run.join("log.jsonl"),
        concat!(
            r#"{"kind":"val","step":0,"val_loss":10.8,"tokens":0,"train_time_ms":0.0}"#,
            "\n",
            r#"{"kind":"val","step":50,"val_loss":7.5,"tokens":800,"train_time_ms":400.0}"#,
            "\n",
            r#"{"kind":"val","step":100,"val_loss":null,"tokens":1600,"train_time_ms":800.0}"#,
            "\n",
        ),
    )
    .unwrap();
    let r = load_run(&run).unwrap();
    assert!(r.val[2].val_loss.is_nan());
    let row = RunRow::from_run(&r, Some(3.28));
    assert!(row.final_val_loss.unwrap().is_nan() && !row.reached);
    let g = seeds::group_stats(std::slice::from_ref(&r), &[row]);
    assert_eq!((g[0].diverged, g[0].final_loss_mean), (1, None));
    assert_eq!(g[0].n_label(), "1 (1 unfinished, 1 diverged)");
    let json: serde_json::Value = serde_json::from_str(&render(
        std::slice::from_ref(&r),
        &CompareOpts {
            target: None,
            format: Format::Json,
        },
    ))
    .unwrap();
    assert!(
        json["runs"][0]["final_val_loss"].is_null(),
        "NaN is written as null"
    );
    let cmp = Comparison::new(std::slice::from_ref(&r), Some(3.28));
    cmp.plot(&dir.path().join("d.svg"), &Default::default())
        .unwrap();
}

#[test]
fn unknown_record_kinds_are_skipped() {
    // Kinds added to the log later are skipped; "target" records are read and
    // checked but the target is recomputed from the val records.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("log.jsonl"),
        concat!(
            r#"{"kind":"val","step":0,"val_loss":10.8,"tokens":0,"train_time_ms":0.0}"#,
            "\n",
            r#"{"kind":"hessian","step":1,"trace":0.5}"#,
            "\n",
            r#"{"kind":"target","step":0,"tokens":0,"train_time_ms":0.0,"val_loss":10.8}"#,
            "\n",
            r#"{"kind":"train","step":1,"loss":9.9,"tokens":64,"step_ms":5.0,"train_time_ms":0.0}"#,
            "\n",
        ),
    )
    .unwrap();
    let r = load_run(dir.path()).unwrap();
    assert_eq!((r.val.len(), r.train.len()), (1, 1));
    std::fs::write(dir.path().join("log.jsonl"), "{\"step\":1}\n{}\n").unwrap();
    let e = format!("{:#}", load_run(dir.path()).unwrap_err());
    assert!(
        e.contains("log.jsonl:1: record without a \"kind\" string"),
        "{e}"
    );
}

#[test]
fn diag_records_become_scalars_and_medians() {
    let dir = tempfile::tempdir().unwrap();
    let layer = |fro: f64, ratio: f64, rank: f64| {
        format!(
            r#"{{"grad_fro":{fro},"grad_nuc":1.0,"grad_spec":0.5,"stable_rank":{rank},"nuc_fro_ratio":{ratio},"update_rms":0.001,"kept_rank":3}}"#
        )
    };
    let diag = format!(
        r#"{{"kind":"diag","step":1,"layers":{{"a":{},"b":{},"c":{}}}}}"#,
        layer(2.0, 10.0, 4.0),
        layer(1.0, 30.0, 2.0),
        // A diverging matrix: its null is NaN in its own series and left out of the medians.
        r#"{"grad_fro":null,"grad_nuc":null,"grad_spec":null,"stable_rank":null,"nuc_fro_ratio":null}"#,
    );
    let log = [
        r#"{"kind":"train","step":1,"loss":9.9,"tokens":64,"step_ms":5.0,"train_time_ms":0.0,"diag_ms":12.5}"#,
        diag.as_str(),
    ]
    .join("\n");
    std::fs::write(dir.path().join("log.jsonl"), log + "\n").unwrap();
    let r = load_run(dir.path()).unwrap();
    let s = &r.scalars;
    assert_eq!(s["time/diag_ms"], vec![(1, 12.5)]);
    assert_eq!(s["diag/a/grad_fro"], vec![(1, 2.0)]);
    assert_eq!(s["diag/b/kept_rank"], vec![(1, 3.0)]);
    assert_eq!(s["diag/b/update_rms"], vec![(1, 0.001)]);
    assert!(s["diag/c/grad_fro"][0].1.is_nan());
    assert!(
        !s.contains_key("diag/c/update_rms"),
        "absent optional fields stay absent"
    );
    assert_eq!(s["diag/median/nuc_fro_ratio"], vec![(1, 20.0)]);
    assert_eq!(s["diag/median/stable_rank"], vec![(1, 3.0)]);
    // 3 matrices: 5 + 7 + 7 fields, 2 medians, diag_ms.
    assert_eq!(s.len(), 5 + 7 + 7 + 2 + 1);

    // A diag record that is not one names its file and line.
    let bad = r#"{"kind":"diag","step":1,"layers":{"a":{"grad_fro":1.0}}}"#;
    std::fs::write(dir.path().join("log.jsonl"), format!("{bad}\n{bad}\n")).unwrap();
    let e = format!("{:#}", load_run(dir.path()).unwrap_err());
    assert!(e.contains("log.jsonl:1: bad diag record"), "{e}");
    assert!(e.contains("missing field `grad_nuc`"), "{e}");
}
