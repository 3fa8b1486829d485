//! Whatever stops a run (Ctrl-C before a validation step or in the last step, a log whose last
//! line was cut, `timeout`, a closed terminal, a closed pipe), the resumed run's log equals a
//! straight run's, and every step that owed a validation has exactly one.
use super::*;
use std::io::{BufRead, BufReader};

/// Six steps of 1,024 tokens, validation at 0, 3 and 6: slow enough (tenths of a second per
/// step in the dev profile) that a signal sent when a step's record appears lands in the next
/// step. The target is reached at step 3 (val loss ~10.9 there, 11.1 at step 0).
fn six_steps() -> Vec<String> {
    let mut v = tiny(6);
    for s in [
        "train.batch_tokens=1024",
        "train.micro_batch=16",
        "train.val_every=3",
        "train.target_loss=11.0",
    ] {
        v = with(v, s);
    }
    v
}

/// Train `name` until its log has the train record of `after`, send `sig`, check the exit and
/// the checkpoint at the step it names, then resume it to the end.
fn interrupt_and_resume(runs: &Path, name: &str, after: usize, sig: &str, code: i32) -> usize {
    let r = runs.to_str().unwrap();
    let extra = six_steps();
    let mut child = spawn(&train_args(r, name, &extra));
    let dir = runs.join(name);
    wait_for_line(
        &dir,
        &mut child,
        &format!("\"kind\":\"train\",\"step\":{after},"),
    );
    kill(&child, sig);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    let step = interrupted_step(&err);
    assert!(
        dir.join(format!("checkpoints/step_{step:06}/state.json"))
            .is_file(),
        "no checkpoint at step {step}"
    );
    let s = summary(&dir);
    assert_eq!(
        (s["status"].as_str(), s["finished"].as_bool()),
        (Some("interrupted"), Some(false))
    );
    let mut resume = train_args(r, name, &[]);
    resume.push("--resume");
    let o = run(&resume);
    assert!(o.status.success(), "{}", stderr(&o));
    step
}

#[test]
fn every_owed_validation_is_taken_exactly_once_whatever_stops_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path();
    let r = runs.to_str().unwrap();
    let extra = six_steps();
    let o = run(&train_args(r, "straight", &extra));
    assert!(o.status.success(), "{}", stderr(&o));
    let straight = records(&runs.join("straight"));
    let vals: Vec<u64> = straight
        .iter()
        .filter(|r| r.0 == "val")
        .map(|r| r.1)
        .collect();
    assert_eq!(vals, [0, 3, 6]);
    let want = summary(&runs.join("straight"));
    assert_eq!(want["target_step"], 3, "{want}");
    let same = |name: &str, how: &str| {
        let dir = runs.join(name);
        assert_eq!(records(&dir), straight, "{how}: the resumed log differs");
        let got = summary(&dir);
        for k in ["target_step", "final_val_loss", "final_step", "finished"] {
            assert_eq!(got[k], want[k], "{how}: summary {k}");
        }
    };
    // Ctrl-C during step 3, which owes a validation: the run stops at step 3 without it, and
    // the resume takes it first (before the fix, the target moved to step 6).
    let at = interrupt_and_resume(runs, "before-val", 2, "-INT", 130);
    same("before-val", &format!("SIGINT, stopped at step {at}"));
    // SIGTERM during the last step: the summary said finished with step 3's loss.
    let at = interrupt_and_resume(runs, "last", 5, "-TERM", 143);
    same("last", &format!("SIGTERM, stopped at step {at}"));
    // The log's last lines (the val and target records of the checkpoint's step) cut off by a
    // crash mid-write: the resume writes them back from the checkpoint.
    let mut stop = train_args(r, "cut", &extra);
    stop.extend(["--stop-after", "3"]);
    let o = run(&stop);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = runs.join("cut/log.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let at = text
        .find("{\"kind\":\"val\",\"step\":3")
        .expect("val at step 3");
    std::fs::write(&log, &text[..at + 20]).unwrap();
    let mut resume = train_args(r, "cut", &[]);
    resume.push("--resume");
    let o = run(&resume);
    assert!(o.status.success(), "{}", stderr(&o));
    same("cut", "last line cut");
    // compare tells an interrupted run from a finished one.
    let csv = run(&["compare", r, "--format", "csv"]);
    assert!(String::from_utf8_lossy(&csv.stdout).contains(",finished"));
}

#[test]
fn timeout_hangup_and_a_repeated_signal_stop_with_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path();
    let r = runs.to_str().unwrap();
    let extra = tiny(100_000);
    // GNU timeout sends SIGTERM to the child, then again to its whole process group: one
    // request, not a second Ctrl-C that exits without a checkpoint.
    let mut args = vec!["-s", "TERM", "3", env!("CARGO_BIN_EXE_speedrun")];
    args.extend(train_args(r, "t", &extra));
    let o = Command::new("timeout")
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("GNU timeout");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(124), "{err}");
    let step = interrupted_step(&err);
    assert!(err.contains("(SIGTERM)"), "{err}");
    let ck = runs.join(format!("t/checkpoints/step_{step:06}/state.json"));
    assert!(ck.is_file(), "timeout lost the run: {err}");
    assert_eq!(summary(&runs.join("t"))["status"], "interrupted");
    let csv = run(&["compare", r, "--format", "csv"]);
    assert!(String::from_utf8_lossy(&csv.stdout).contains(",interrupted"));
    // The same signal twice at once, and SIGHUP (a closed terminal): each a clean stop.
    for (name, sigs, code, what) in [
        ("twice", &["-TERM", "-TERM"][..], 143, "(SIGTERM)"),
        ("hup", &["-HUP"][..], 129, "(SIGHUP)"),
    ] {
        let mut child = spawn(&train_args(r, name, &extra));
        wait_for_training(&runs.join(name), &mut child);
        for s in sigs {
            kill(&child, s);
        }
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{name}: {err}");
        assert!(err.contains(what), "{name}: {err}");
        let step = interrupted_step(&err);
        let ck = runs.join(format!("{name}/checkpoints/step_{step:06}/state.json"));
        assert!(ck.is_file(), "{name}: no checkpoint at step {step}");
    }
}

#[test]
fn a_closed_stdout_stops_the_run_with_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let extra = tiny(100_000);
    // `speedrun train | head -1`: the reader takes the banner and goes.
    let mut child = spawn(&train_args(runs, "p", &extra));
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("run "), "{first}");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("SIGPIPE: stdout was closed"), "{err}");
    let step = interrupted_step(&err);
    let dir = tmp.path().join("p");
    assert!(dir
        .join(format!("checkpoints/step_{step:06}/state.json"))
        .is_file());
    // It resumes like any interrupted run.
    let until = (step + 1).to_string();
    let mut resume = train_args(runs, "p", &[]);
    resume.extend(["--resume", "--stop-after", &until]);
    let o = run(&resume);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&dir)["final_step"], step + 1);
}
