//! What a start may find in its run directory: an earlier run whose log was deleted, a symlinked
//! lock, files of the user's, a dangling symlink, a live run. Each is refused with one line and
//! nothing in the directory changes.
use super::*;

fn refused(args: &[&str], needle: &str) -> String {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{args:?}: {err}");
    err
}

#[test]
fn a_run_directory_is_never_overwritten_or_mistaken_for_a_fresh_one() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path();
    let r = runs.to_str().unwrap();
    let extra = tiny(6);
    // A deleted log.jsonl with checkpoints left behind is an earlier run, not a fresh start.
    let mut stop = train_args(r, "old", &extra);
    stop.extend(["--stop-after", "4"]);
    let o = run(&stop);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(runs.join("old/log.jsonl")).unwrap();
    refused(
        &train_args(r, "old", &extra),
        "earlier run (checkpoints, summary.json)",
    );
    // --resume continues from them, and says the log starts over.
    let mut resume = train_args(r, "old", &[]);
    resume.push("--resume");
    let o = run(&resume);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("log.jsonl: missing"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("step_000004"));
    // A symlinked .lock: refused, and the file it points at keeps its bytes.
    let precious = runs.join("precious.txt");
    std::fs::write(&precious, "mine").unwrap();
    std::fs::create_dir(runs.join("l")).unwrap();
    std::os::unix::fs::symlink(&precious, runs.join("l/.lock")).unwrap();
    refused(&train_args(r, "l", &extra), "symbolic link");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "mine");
    // Files the project did not write: refused by name, left as they were.
    for (dir, file) in [("g", "config.toml"), ("m", "meta.json"), ("n", "notes.txt")] {
        std::fs::create_dir(runs.join(dir)).unwrap();
        std::fs::write(runs.join(dir).join(file), "mine").unwrap();
        refused(&train_args(r, dir, &extra), file);
        assert_eq!(
            std::fs::read_to_string(runs.join(dir).join(file)).unwrap(),
            "mine"
        );
        assert_eq!(std::fs::read_dir(runs.join(dir)).unwrap().count(), 1);
    }
    // A symlink to nowhere is named as such (it was "File exists").
    std::os::unix::fs::symlink(runs.join("nowhere"), runs.join("s")).unwrap();
    refused(&train_args(r, "s", &extra), "symbolic link to");
}

#[test]
fn a_second_plain_train_on_a_live_run_names_its_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let extra = tiny(100_000);
    let mut first = spawn(&train_args(runs, "live", &extra));
    wait_for_training(&tmp.path().join("live"), &mut first);
    let err = refused(&train_args(runs, "live", &extra), "in use by another");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    // compare sees it running, without taking the lock from it.
    let csv = run(&["compare", runs, "--format", "csv"]);
    assert!(String::from_utf8_lossy(&csv.stdout).contains(",running"));
    kill(&first, "-KILL");
    first.wait().unwrap();
    // Killed: nothing holds it and it never said how it ended.
    let csv = run(&["compare", runs, "--format", "csv"]);
    assert!(String::from_utf8_lossy(&csv.stdout).contains(",crashed"));
}
