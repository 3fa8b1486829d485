//! The first reliability cases: a signal, a second writer, bad names, failed starts, divergence,
//! a race's checks, stale temporaries, resuming with the run's own config, data roots, damaged
//! checkpoints and unusable input to the small tools.
use super::*;
use std::path::PathBuf;

#[test]
fn sigint_finishes_the_step_checkpoints_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let extra = tiny(100_000);
    let mut child = spawn(&train_args(runs, "r", &extra));
    let dir = tmp.path().join("r");
    wait_for_training(&dir, &mut child);
    kill(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let step = interrupted_step(&err);
    let ckpt = dir.join(format!("checkpoints/step_{step:06}/state.json"));
    assert!(
        ckpt.is_file(),
        "no checkpoint at the interrupted step {step}"
    );
    assert_eq!(summary(&dir)["final_step"], step);
    // The resume reads the run's own config (no -c, no --set) and continues from that step.
    let until = (step + 1).to_string();
    let mut resume = train_args(runs, "r", &[]);
    resume.extend(["--resume", "--stop-after", &until]);
    let o = run(&resume);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&dir)["final_step"], step + 1);
}

#[test]
fn a_second_writer_is_refused_with_the_holders_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let extra = tiny(100_000);
    let mut first = spawn(&train_args(runs, "x", &extra));
    let dir = tmp.path().join("x");
    wait_for_training(&dir, &mut first);
    let mut resume = train_args(runs, "x", &extra);
    resume.push("--resume");
    let second = run(&resume);
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    kill(&first, "-KILL");
    first.wait().unwrap();
    // The kernel dropped the lock with the process: the run resumes now.
    let mut resume_short = train_args(runs, "x", &[]);
    resume_short.extend(["--resume", "--stop-after", "1"]);
    let o = run(&resume_short);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bad_names_are_refused_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let extra = tiny(2);
    for name in ["../x", "/abs", "", ".", "..", "a/b", "new\nline"] {
        let o = run(&train_args(runs_s, name, &extra));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name:?}: {err}");
        assert!(
            err.starts_with("error: --name") && err.trim().lines().count() == 1,
            "{name:?}: {err}"
        );
    }
    assert!(!runs.exists(), "a refused name created {}", runs.display());
    assert!(!tmp.path().join("x").exists());
}

#[test]
fn a_failed_start_leaves_no_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let bad_data = [
        "--set".to_string(),
        "data.train=\"/nonexistent/*.bin\"".to_string(),
    ];
    let too_long = ["--set".to_string(), "model.seq_len=100000".to_string()];
    let neg_lr = ["--set".to_string(), "optim.muon.lr=-1".to_string()];
    let nan_lr = ["--set".to_string(), "optim.muon.lr=nan".to_string()];
    for (i, set) in [&bad_data[..], &too_long[..], &neg_lr[..], &nan_lr[..]]
        .iter()
        .enumerate()
    {
        let mut extra = tiny(2);
        extra.extend(set.iter().cloned());
        let name = format!("r{i}");
        let o = run(&train_args(runs, &name, &extra));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{set:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{set:?}: {err}");
        assert!(
            !tmp.path().join(&name).exists(),
            "{set:?} left a run directory"
        );
    }
}

#[test]
fn divergence_is_recorded_and_the_race_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("race");
    let mut args: Vec<String> = ["race", "--out", out.to_str().unwrap(), "--no-progress"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(tiny(4));
    args.extend(["--set".into(), "train.checkpoint_every=0".into()]);
    args.extend(["--optims".into(), "adamw@boom:optim.adamw.lr=1e30".into()]);
    args.extend(["--optims".into(), "muon".into()]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&a);
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.status.success(), "{text}");
    assert!(text.contains("boom seed 0: diverged at step"), "{text}");
    assert!(
        text.contains("diverged @"),
        "the race table does not mark the diverged run: {text}"
    );
    let boom = summary(&out.join("boom-s0"));
    assert!(boom["diverged_at"].as_u64().is_some(), "{boom}");
    assert_eq!(summary(&out.join("muon-s0"))["finished"], true);
    // A rerun skips both: the diverged run has ended for good.
    let again = run(&a);
    let again = String::from_utf8_lossy(&again.stdout).to_string();
    assert_eq!(
        again.matches("ended earlier, skipped").count(),
        2,
        "{again}"
    );
    // Alone, a diverged run exits with its own status.
    let mut single = train_args(tmp.path().to_str().unwrap(), "d", &[]).to_vec();
    let extra = tiny(4);
    single.extend(extra.iter().map(String::as_str));
    single.extend(["--optim", "adamw", "--set", "optim.adamw.lr=1e30"]);
    let o = run(&single);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("diverged at step"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("checkpoint is kept: "),
        "{}",
        stderr(&o)
    );
    // Without a checkpoint before the divergence, the message does not promise one.
    let mut none = train_args(tmp.path().to_str().unwrap(), "d0", &[]).to_vec();
    none.extend(single[6..].iter().copied());
    none.extend(["--set", "train.checkpoint_every=0"]);
    let o = run(&none);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no checkpoint was written before it"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn compare_reports_a_bad_run_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs");
    for run in ["muon_s0", "adamw_s0"] {
        let dir = tmp.path().join(run);
        std::fs::create_dir(&dir).unwrap();
        for e in std::fs::read_dir(fixtures.join(run)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(tmp.path().join("adamw_s0/summary.json"), "{ not json").unwrap();
    let o = run(&["compare", tmp.path().to_str().unwrap(), "--format", "csv"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("adamw_s0/summary.json: malformed summary") && err.contains("left out"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("muon_s0") && !out.contains("adamw_s0"),
        "{out}"
    );
}

#[test]
fn race_checks_every_contestant_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("race");
    let o_str = out.to_str().unwrap();
    let o = run(&["race", "--out", o_str, "--optims", "muon,sgd"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("sgd"), "{}", stderr(&o));
    let o = run(&["race", "--out", o_str, "--optims", "muon", "--seeds", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--seeds 0"), "{}", stderr(&o));
    let o = run(&[
        "race",
        "--out",
        o_str,
        "--optims",
        "muon:optim.muon.lr=-3",
        "--optims",
        "adamw",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("optim.muon.lr"), "{}", stderr(&o));
    assert!(!out.exists(), "a rejected race created {}", out.display());
}

#[test]
fn stale_checkpoint_temporaries_are_removed_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let extra = tiny(2);
    let o = run(&train_args(runs, "s", &extra));
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = tmp.path().join("s/checkpoints");
    std::fs::create_dir_all(ck.join(".tmp_step_000009_999")).unwrap();
    std::fs::write(
        ck.join(".tmp_step_000009_999/model.safetensors"),
        b"partial",
    )
    .unwrap();
    let mut resume = train_args(runs, "s", &[]);
    resume.push("--resume");
    let o = run(&resume);
    assert!(o.status.success(), "{}", stderr(&o));
    let left: Vec<PathBuf> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        left.iter()
            .all(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')),
        "{left:?}"
    );
}

#[test]
fn resume_without_config_uses_the_runs_own_and_names_a_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let mut extra = tiny(4);
    extra.extend(["--stop-after".to_string(), "2".to_string()]);
    let o = run(&train_args(runs, "m", &extra));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut resume = train_args(runs, "m", &[]);
    resume.push("--resume");
    let o = run(&resume);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&tmp.path().join("m"))["finished"], true);
    // A real change is named, with the way out.
    let mut changed = resume.clone();
    changed.extend(["--set", "optim.muon.lr=0.01", "--set", "train.steps=6"]);
    let o = run(&changed);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("optim.muon.lr") && err.contains("train.steps"),
        "{err}"
    );
    assert!(err.contains("-c ") && err.contains("config.toml"), "{err}");
}

#[test]
fn the_default_preset_trains_from_any_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let runs = tmp.path().join("runs");
    let extra = tiny(2);
    let mut args = train_args(runs.to_str().unwrap(), "anywhere", &extra);
    args.push("--set");
    args.push("train.checkpoint_every=0");
    let o = bin()
        .args(&args)
        .current_dir(tmp.path())
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&runs.join("anywhere"))["finished"], true);
    // Data that exists nowhere: the error names the resolved path and the way to fix it.
    let mut args = train_args(runs.to_str().unwrap(), "nowhere", &extra);
    args.extend(["--set", "data.val=\"mine/val_*.bin\""]);
    let o = bin().args(&args).current_dir(tmp.path()).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("mine/val_") && err.contains("--data-dir"),
        "{err}"
    );
}

#[test]
fn a_damaged_checkpoint_is_passed_over_for_the_one_before() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let mut extra = tiny(4);
    extra.extend(["--stop-after".to_string(), "3".to_string()]);
    let o = run(&train_args(runs, "c", &extra));
    assert!(o.status.success(), "{}", stderr(&o));
    // keep_checkpoints = 2: steps 2 and 3. Flip one byte of the newest weights.
    let newest = tmp
        .path()
        .join("c/checkpoints/step_000003/model.safetensors");
    let mut bytes = std::fs::read(&newest).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x10;
    std::fs::write(&newest, bytes).unwrap();
    let mut resume = train_args(runs, "c", &[]);
    resume.push("--resume");
    let o = run(&resume);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("warning:") && err.contains("checksum mismatch"),
        "{err}"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("resumed from") && out.contains("step_000002"),
        "{out}"
    );
    assert_eq!(summary(&tmp.path().join("c"))["finished"], true);
}

#[test]
fn small_tools_fail_loudly_on_unusable_input() {
    let tmp = tempfile::tempdir().unwrap();
    // A shard with a token id past the vocabulary: inspect says so and exits 1.
    let shard = tmp.path().join("bad.bin");
    let mut bytes = vec![0u8; 1024];
    bytes[..4].copy_from_slice(&20240520i32.to_le_bytes());
    bytes[4..8].copy_from_slice(&1i32.to_le_bytes());
    bytes[8..12].copy_from_slice(&2i32.to_le_bytes());
    bytes.extend_from_slice(&60000u16.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    std::fs::write(&shard, bytes).unwrap();
    let o = run(&["data", "inspect", shard.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(">= vocab"), "{}", stderr(&o));
    // Tokenizing an empty file is an error, not a silent no-op.
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let out = tmp.path().join("tok");
    let o = run(&[
        "data",
        "tokenize",
        empty.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("empty"), "{}", stderr(&o));
    // A fetch that cannot reach its endpoint leaves no empty directory.
    let dest = tmp.path().join("fetched");
    let o = run(&[
        "data",
        "fetch",
        "fineweb10B",
        "--train-shards",
        "1",
        "--endpoint",
        "http://127.0.0.1:9",
        "--out",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!dest.exists(), "a failed fetch left {}", dest.display());
    // An unknown plot format is refused before the table is printed.
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/runs/muon_s0");
    let o = run(&["compare", fixtures, "--plot", "x.gif"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty(), "the table was printed first");
    assert!(stderr(&o).contains("x.gif"), "{}", stderr(&o));
}

#[test]
fn ctrl_c_stops_sampling_cleanly() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let o = run(&train_args(runs, "s", &tiny(2)));
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = tmp.path().join("s");
    let args = [
        "sample",
        dir.to_str().unwrap(),
        "--prompt",
        "ROMEO:",
        "--tokens",
        "100000000",
    ];
    let mut child = spawn(&args);
    // Tokens stream as they are made: wait for some past the prompt, then interrupt.
    let mut first = Vec::new();
    let mut buf = [0u8; 64];
    while first.len() <= "ROMEO:".len() {
        let n = child.stdout.as_mut().unwrap().read(&mut buf).unwrap();
        assert!(n > 0, "the output ended before the interrupt");
        first.extend_from_slice(&buf[..n]);
    }
    kill(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("interrupted (SIGINT): sample 1 of 1 stopped after ")
            && lines[0].contains(" token"),
        "{err}"
    );
    // What was written before the interrupt ends with a newline.
    let text = [&first[..], &out.stdout[..]].concat();
    assert!(text.starts_with(b"ROMEO:") && text.ends_with(b"\n"));
}
