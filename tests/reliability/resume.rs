//! What a resume, or the data a run reads, may meet: an edited `state.json`, a stray temporary
//! file, a damaged log, a damaged cached shard, another precision, a lost or edited
//! `config.toml`, a `--stop-after` already passed, a bad token id in a later shard.
use super::*;

fn stopped_at(runs: &Path, name: &str, step: usize, extra: &[String]) -> Vec<String> {
    let r = runs.to_str().unwrap();
    let s = step.to_string();
    let mut args = train_args(r, name, extra);
    args.extend(["--stop-after", &s]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut resume: Vec<String> = train_args(r, name, &[])
        .iter()
        .map(|a| a.to_string())
        .collect();
    resume.push("--resume".into());
    resume
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn damaged_or_edited_state_is_caught_and_passed_over() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path();
    let extra = tiny(6);
    // An edited step in the newest state.json: it no longer matches its own checksum and its
    // directory, so the resume warns and takes the checkpoint before it.
    let resume = stopped_at(runs, "e", 3, &extra);
    let state = runs.join("e/checkpoints/step_000003/state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, text.replace("\"step\": 3", "\"step\": 5")).unwrap();
    // A stray file (not a directory) named like a temporary, and a log line that is not UTF-8.
    std::fs::write(runs.join("e/checkpoints/.tmp_x"), "junk").unwrap();
    let log = runs.join("e/log.jsonl");
    let mut bytes = std::fs::read(&log).unwrap();
    let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    bytes.splice(second..second, b"\xff\xfe\n".iter().copied());
    std::fs::write(&log, bytes).unwrap();
    let o = run(&strs(&resume));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("edited or damaged"), "{err}");
    assert!(err.contains("not UTF-8 text (damaged); dropped"), "{err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("resumed from") && out.contains("step_000002"),
        "{out}"
    );
    assert!(!runs.join("e/checkpoints/.tmp_x").exists());
    assert_eq!(summary(&runs.join("e"))["finished"], true);
}

#[test]
fn a_resume_keeps_the_runs_precision_config_and_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path();
    let extra = tiny(6);
    let resume = stopped_at(runs, "k", 4, &extra);
    let with = |more: &[&str]| {
        let mut a = strs(&resume);
        a.extend(more);
        run(&a)
    };
    let one_line_error = |o: &Output, needle: &str| {
        let err = stderr(o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err}");
    };
    // A refused resume leaves the run as it was (the log is not cut back).
    let log = std::fs::read(runs.join("k/log.jsonl")).unwrap();
    one_line_error(&with(&["--precision", "bf16"]), "was trained in fp32");
    one_line_error(
        &with(&["--stop-after", "3"]),
        "the run is at step 4 already",
    );
    one_line_error(
        &with(&["--init-from", "x.safetensors"]),
        "cannot be used with",
    );
    assert_eq!(std::fs::read(runs.join("k/log.jsonl")).unwrap(), log);
    // config.toml edited, then deleted: named as such, with the command the run began with.
    let cfg = runs.join("k/config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("steps = 6", "steps = 7")).unwrap();
    one_line_error(&with(&[]), "no longer matches the run's checkpoints");
    std::fs::remove_file(&cfg).unwrap();
    let o = with(&[]);
    one_line_error(&o, "config.toml is missing");
    assert!(
        stderr(&o).contains("it was started with `"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_damaged_cached_shard_is_written_again_from_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let runs = tmp.path().join("runs");
    let extra = with(tiny(2), "train.checkpoint_every=0");
    let train = |name: &str| {
        bin()
            .args(train_args(runs.to_str().unwrap(), name, &extra))
            .current_dir(tmp.path())
            .env("XDG_CACHE_HOME", &cache)
            .output()
            .unwrap()
    };
    let o = train("a");
    assert!(o.status.success(), "{}", stderr(&o));
    let shard = glob_one(&cache, "tinyshakespeare_train_000001.bin");
    let good = std::fs::read(&shard).unwrap();
    let mut bad = good.clone();
    bad[4096] ^= 0x01;
    std::fs::write(&shard, bad).unwrap();
    let o = train("b");
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("damaged cached copy"), "{err}");
    assert_eq!(std::fs::read(&shard).unwrap(), good);
    // Both runs read the same tokens: the same loss at step 1.
    assert_eq!(records(&runs.join("a")), records(&runs.join("b")));
}

/// The one file named `name` under `dir`, at any depth.
fn glob_one(dir: &Path, name: &str) -> std::path::PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                return p;
            }
        }
    }
    panic!("no {name} under {}", dir.display());
}

#[test]
fn a_bad_token_in_a_later_shard_is_found_before_the_run_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let shard = |ids: &[u16]| {
        let mut b = vec![0u8; 1024];
        b[..4].copy_from_slice(&20240520i32.to_le_bytes());
        b[4..8].copy_from_slice(&1i32.to_le_bytes());
        b[8..12].copy_from_slice(&(ids.len() as i32).to_le_bytes());
        for t in ids {
            b.extend_from_slice(&t.to_le_bytes());
        }
        b
    };
    let good: Vec<u16> = (0..4096).map(|i| (i * 7 % 50000) as u16).collect();
    let mut bad = good.clone();
    bad[3000] = 60000;
    std::fs::write(data.join("t_train_000001.bin"), shard(&good)).unwrap();
    std::fs::write(data.join("t_train_000002.bin"), shard(&bad)).unwrap();
    std::fs::write(data.join("t_val_000000.bin"), shard(&good)).unwrap();
    let mut extra = tiny(2);
    extra = with(extra, "data.train=\"data/t_train_*.bin\"");
    extra = with(extra, "data.val=\"data/t_val_*.bin\"");
    let runs = tmp.path().join("runs");
    let mut args = train_args(runs.to_str().unwrap(), "b", &extra);
    let root = tmp.path().to_str().unwrap();
    args.extend(["--data-dir", root]);
    let o = run(&args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("t_train_000002.bin: token id 60000 at position 3000"),
        "{err}"
    );
    assert!(!runs.exists(), "the failed start left {}", runs.display());
    // A --data-dir that does not exist is an error, not a fall-back to the built-in shards.
    let mut args = train_args(runs.to_str().unwrap(), "n", &extra);
    args.extend(["--data-dir", "/nonexistent"]);
    let o = run(&args);
    assert!(
        stderr(&o).contains("--data-dir /nonexistent: does not exist"),
        "{}",
        stderr(&o)
    );
}
