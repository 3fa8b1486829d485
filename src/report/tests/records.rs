//! modded-nanogpt text logs as runs: the shipped record-4 log (data/records/), a live log cut
//! mid-line, a malformed line named by file and line, and runs with no data yet.
use super::*;

fn record4_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/records/record4-2024-10-11-muon.txt")
}

/// The step lines of a text log, split here independently of `textlog.rs`: (step, kind, loss,
/// train_time_ms).
fn raw_steps(text: &str) -> Vec<(u64, String, f64, f64)> {
    text.lines()
        .filter(|l| l.starts_with("step:"))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let step = f[0][5..].split('/').next().unwrap().parse().unwrap();
            let (kind, loss) = f[1].split_once(':').unwrap();
            let ms = f[2]
                .trim_start_matches("train_time:")
                .trim_end_matches("ms");
            (
                step,
                kind.to_string(),
                loss.parse().unwrap(),
                ms.parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn record4_log_reads_as_a_run() {
    let text = std::fs::read_to_string(record4_path()).unwrap();
    let raw = raw_steps(&text);
    let run = load_run(&record4_path()).unwrap();
    assert_eq!(run.source, Source::TextLog);
    assert_eq!(run.name, "record4-2024-10-11-muon");
    assert_eq!(run.optim, TEXT_LOG_OPTIM);
    assert_eq!(run.device, "8× NVIDIA H100 80GB HBM3");
    // batch_size 8*64 sequences × sequence_length 1024, from the script at the top of the log.
    assert_eq!(run.batch_tokens, Some(524_288));
    let vals: Vec<_> = raw.iter().filter(|r| r.1 == "val_loss").collect();
    let trains: Vec<_> = raw.iter().filter(|r| r.1 == "train_loss").collect();
    assert_eq!((run.val.len(), run.train.len()), (51, 6200));
    assert_eq!((vals.len(), trains.len()), (51, 6200));
    for (p, r) in run.val.iter().zip(&vals) {
        assert_eq!((p.step, p.val_loss), (r.0, r.2));
        // The record's clock starts after step 10 (the times it prints before include compilation).
        let ms = if r.0 <= UNTIMED_STEPS { 0.0 } else { r.3 };
        assert_eq!(p.train_time_ms, ms);
        assert_eq!(p.tokens, Some(r.0 * 524_288));
    }
    for (p, r) in run.train.iter().zip(&trains) {
        assert_eq!((p.step, p.loss), (r.0, r.2));
    }
    assert!(run.finished, "the last val record is at step 6200 of 6200");
    // The README's numbers: 3.2785 at step 6200 in 22.3 minutes.
    let row = RunRow::from_run(&run, None);
    assert_eq!(row.target, Some(3.28));
    assert_eq!(row.target_step, Some(6200), "6125 has 3.2802 > 3.28");
    assert_eq!(row.final_val_loss, Some(3.2785));
    assert_eq!(row.target_train_time_ms, Some(1_339_067.0));
    assert_eq!(format!("{:.1}", 1_339_067.0 / 60_000.0), "22.3");
    assert_eq!(row.target_tokens, Some(6200 * 524_288));
    // Step average over the timed span, step 11 (214 ms) to 6200 (1339065 ms): the log's own
    // last step_avg is 216.33 ms.
    let avg = row.step_avg_ms.unwrap();
    assert!(close(avg, (1_339_065.0 - 214.0) / 6189.0, 1e-12) && (avg - 216.33).abs() < 0.005);
    // Next to runs of ours, through the same table.
    let md = render(&[run, fixture("muon_s0")], &CompareOpts::default());
    assert!(
        md.contains("| record4-2024-10-11-muon | modded-nanogpt |"),
        "{md}"
    );
    assert!(
        md.contains("| 6200 | 3250585600 | 1339.1 | 6200 | 3.2785 |"),
        "{md}"
    );
}

#[test]
fn live_text_log_cut_mid_line_and_malformed_lines() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(record4_path()).unwrap();
    // Up to the middle of the step-12 line, as a reader sees a log being written.
    let cut = text.find("step:12/6200 train_loss").unwrap() + 17;
    let live = dir.path().join("live.txt");
    std::fs::write(&live, &text[..cut]).unwrap();
    let run = load_run(&live).unwrap();
    assert_eq!(run.train.last().unwrap().step, 11);
    assert!(!run.finished);
    assert_eq!(RunRow::from_run(&run, None).final_step, Some(11));
    // The same bad line in the middle is an error naming the file and line.
    let bad = dir.path().join("bad.txt");
    std::fs::write(
        &bad,
        format!(
            "{}\nstep:13/6200 val_loss:3.1 train_time:900ms\n",
            &text[..cut]
        ),
    )
    .unwrap();
    let e = format!("{:#}", load_run(&bad).unwrap_err());
    let line = text[..cut].lines().count();
    assert!(
        e.contains(&format!("bad.txt:{line}: malformed step line")),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    // A log whose script is written but no step yet: no data, not an error.
    let sep = text.find("\n=====").unwrap();
    let fresh = dir.path().join("fresh.txt");
    std::fs::write(&fresh, &text[..sep + 102]).unwrap();
    let run = load_run(&fresh).unwrap();
    assert!(!run.has_data());
    let md = render(&[run], &CompareOpts::default());
    assert!(md.contains("| no data yet |"), "{md}");
    // Any other file named as a run is refused by name.
    let e = format!("{:#}", load_run(Path::new("Cargo.toml")).unwrap_err());
    assert!(e.contains("Cargo.toml: not a modded-nanogpt log"), "{e}");
}

#[test]
fn run_dir_without_records_is_no_data_yet() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("muon-s0");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(
        run.join("config.toml"),
        "name = \"x\"\nseed = 0\n[optim]\nname = \"muon\"\n",
    )
    .unwrap();
    let r = load_run(&run).unwrap();
    assert!(!r.has_data());
    let row = RunRow::from_run(&r, None);
    assert!(row.no_data && !row.finished && row.final_step.is_none());
    let md = render(std::slice::from_ref(&r), &CompareOpts::default());
    assert!(md.contains("| no data yet |"), "{md}");
    // An empty log.jsonl (the trainer has opened it) reads the same.
    std::fs::write(run.join("log.jsonl"), "").unwrap();
    assert!(!load_run(&run).unwrap().has_data());
    // Plots and the page draw it as empty, not as an error.
    let cmp = Comparison::new(std::slice::from_ref(&r), None);
    cmp.plot(&dir.path().join("p.svg"), &plot::PlotOpts::default())
        .unwrap();
    let page = cmp.html(&html_opts()).unwrap();
    assert!(page.contains("no data yet"), "the status column says so");
}

#[test]
fn log_cut_inside_a_utf8_character_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"kind":"val","step":0,"val_loss":10.8,"tokens":0,"train_time_ms":0.0}"#;
    // An optimizer diagnostic with a non-ASCII name, cut inside its 2-byte "é".
    let partial = "{\"kind\":\"optim\",\"step\":1,\"values\":{\"caf\u{e9}\":1.0}}";
    let bytes = partial.as_bytes();
    let cut = partial.find('\u{e9}').unwrap() + 1;
    let mut log = format!("{good}\n").into_bytes();
    log.extend_from_slice(&bytes[..cut]);
    std::fs::write(dir.path().join("log.jsonl"), log).unwrap();
    let r = load_run(dir.path()).unwrap();
    assert_eq!(r.val.len(), 1);
}

/// Beside a modded-nanogpt log the train curves are the records' number (rank 0's last
/// micro-batch, `loss_rank0_last` in log.jsonl), and the titles say so; among runs of ours
/// alone they are the mean. A run that logged the mean only has no train curve on that basis.
#[test]
fn beside_a_record_the_train_curve_is_the_records_number() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("ours");
    std::fs::create_dir(&run_dir).unwrap();
    let src = fixtures().join("muon_s0");
    for f in ["config.toml", "meta.json", "summary.json"] {
        std::fs::copy(src.join(f), run_dir.join(f)).unwrap();
    }
    // The fixture's train records with a records' number 0.25 above the mean.
    let log = std::fs::read_to_string(src.join("log.jsonl")).unwrap();
    let with_last: Vec<String> = log
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["kind"] == "train" {
                v["loss_rank0_last"] = (v["loss"].as_f64().unwrap() + 0.25).into();
            }
            v.to_string()
        })
        .collect();
    std::fs::write(run_dir.join("log.jsonl"), with_last.join("\n") + "\n").unwrap();
    let ours = load_run(&run_dir).unwrap();
    let record = load_run(&record4_path()).unwrap();
    let old = fixture("muon_s1");

    let alone = Comparison::new(std::slice::from_ref(&ours), None).entries(0.9);
    assert_eq!(alone.train_basis, TrainBasis::Mean);
    let means: Vec<f64> = ours.train.iter().map(|t| t.loss).collect();
    assert_eq!(
        alone.runs[0].train.iter().map(|p| p.y).collect::<Vec<_>>(),
        means
    );

    let runs = [record, ours.clone(), old];
    let cmp = Comparison::new(&runs, None);
    let beside = cmp.entries(0.9);
    assert_eq!(beside.train_basis, TrainBasis::Rank0Last);
    let lasts: Vec<f64> = ours.train.iter().map(|t| t.loss + 0.25).collect();
    let drawn: Vec<f64> = beside.runs[1].train.iter().map(|p| p.y).collect();
    assert_eq!(drawn.len(), lasts.len());
    assert!(drawn.iter().zip(&lasts).all(|(a, b)| close(*a, *b, 1e-12)));
    // The record's own curve is its logged train_loss.
    assert_eq!(beside.runs[0].train[0].y, runs[0].train[0].loss);
    assert!(
        beside.runs[2].train.is_empty(),
        "a mean-only log has no records' number"
    );
    let svg = dir.path().join("r.svg");
    cmp.plot(&svg, &plot::PlotOpts::default()).unwrap();
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.contains("train loss: last micro-batch of rank 0, as the records log it"));
    let page = cmp.html(&html_opts()).unwrap();
    assert!(page.contains(r#""trainBasis":"last micro-batch of rank 0, as the records log it""#));
}
