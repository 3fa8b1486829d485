//! Data-parallel training on real processes: `mpirun -np 2 speedrun train …` against one process
//! emulating the same two ranks. Needs the `mpi` feature and OpenMPI's `mpirun` (`.ci/run`
//! installs Debian's openmpi-bin and libopenmpi-dev).
#![cfg(feature = "mpi")]

use std::path::Path;
use std::process::{Command, Output};

fn tiny(optim: &str, steps: usize) -> Vec<String> {
    let mut v: Vec<String> = vec!["--optim".into(), optim.into(), "--no-progress".into()];
    for s in [
        "model.n_layer=2",
        "model.n_head=2",
        "model.n_embd=32",
        "model.seq_len=32",
        "train.batch_tokens=256",
        "train.ranks=2",
        "train.micro_batch=2",
        "train.warmdown_steps=2",
        "train.val_every=2",
        "train.val_tokens=512",
        "train.val_micro_batch=4",
        "train.checkpoint_every=1",
        "optim.newton_muon.refresh=2",
    ] {
        v.extend(["--set".into(), s.into()]);
    }
    v.extend(["--set".into(), format!("train.steps={steps}")]);
    v
}

fn single(runs: &Path, name: &str, args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_speedrun"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RAYON_NUM_THREADS", "1")
        .args([
            "train",
            "--runs-dir",
            runs.to_str().unwrap(),
            "--name",
            name,
        ])
        .args(args)
        .output()
        .unwrap()
}

fn mpirun(np: usize, runs: &Path, name: &str, args: &[String]) -> Output {
    Command::new("mpirun")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "--bind-to",
            "none",
        ])
        .args(["-x", "RAYON_NUM_THREADS=1", "-np", &np.to_string()])
        .arg(env!("CARGO_BIN_EXE_speedrun"))
        .args([
            "train",
            "--runs-dir",
            runs.to_str().unwrap(),
            "--name",
            name,
        ])
        .args(args)
        .output()
        .expect("mpirun (install openmpi-bin)")
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// (kind, step, loss) of every train and val record.
fn losses(dir: &Path) -> Vec<(String, u64, f64)> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let loss = v.get("loss").or_else(|| v.get("val_loss"))?.as_f64()?;
            let kind = v["kind"].as_str()?.to_string();
            matches!(kind.as_str(), "train" | "val")
                .then(|| (kind, v["step"].as_u64().unwrap(), loss))
        })
        .collect()
}

#[test]
fn two_processes_match_one_process_emulating_two_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    for optim in ["adamw", "muon", "newton-muon", "neon", "neon-fstar"] {
        let args = tiny(optim, 6);
        ok(single(tmp.path(), &format!("{optim}-1"), &args));
        ok(mpirun(2, tmp.path(), &format!("{optim}-2"), &args));
        let a = losses(&tmp.path().join(format!("{optim}-1")));
        let b = losses(&tmp.path().join(format!("{optim}-2")));
        assert_eq!(a.len(), b.len(), "{optim}: one writer, every record once");
        assert_eq!(a.iter().filter(|r| r.0 == "train").count(), 6);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((&x.0, x.1), (&y.0, y.1));
            let rel = (x.2 - y.2).abs() / x.2.abs();
            assert!(
                rel <= 1e-5,
                "{optim} {} step {}: {} vs {} (rel {rel:e})",
                x.0,
                x.1,
                x.2,
                y.2
            );
        }
        let meta =
            std::fs::read_to_string(tmp.path().join(format!("{optim}-2/meta.json"))).unwrap();
        assert!(meta.contains("\"world_size\": 2"), "{meta}");
    }
}

#[test]
fn a_resume_under_mpirun_continues_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let args = tiny("newton-muon", 6);
    ok(mpirun(2, tmp.path(), "straight", &args));
    let mut half = args.clone();
    half.extend(["--stop-after".into(), "3".into()]);
    ok(mpirun(2, tmp.path(), "resumed", &half));
    ok(mpirun(
        2,
        tmp.path(),
        "resumed",
        &["--resume".to_string(), "--no-progress".to_string()],
    ));
    assert_eq!(
        losses(&tmp.path().join("straight")),
        losses(&tmp.path().join("resumed"))
    );
}

#[test]
fn a_world_that_does_not_divide_the_ranks_stops_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = tiny("muon", 2);
    args.extend([
        "--set".into(),
        "train.ranks=3".into(),
        "--set".into(),
        "train.batch_tokens=384".into(),
    ]);
    let o = mpirun(2, tmp.path(), "x", &args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("not a multiple of the world size 2"),
        "{err}"
    );
    assert!(!tmp.path().join("x").exists());
}

/// A config every process rejects alike is reported once, by rank 0, and aborts nobody.
#[test]
fn a_bad_config_under_mpirun_is_one_line_from_rank_0() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = tiny("adamw", 2);
    args.extend(["--set".into(), "train.warmdown_steps=5".into()]);
    let o = mpirun(2, tmp.path(), "bad", &args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains("exceeds train.steps"),
        "{err}"
    );
    assert!(!err.contains("MPI_ABORT"), "{err}");
    assert!(!tmp.path().join("bad").exists());
}

/// A race whose runs are mpirun jobs (`--launcher`): each run is a two-process job (world size 2
/// in its meta.json) that matches the same race in one process to 1e-5, and the race's tuning and
/// seeds come out the same.
#[test]
fn a_race_runs_each_run_as_an_mpirun_job() {
    let tmp = tempfile::tempdir().unwrap();
    let race = |out: &Path, launcher: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_speedrun"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RAYON_NUM_THREADS", "1")
            .args(["race", "--optims", "adamw,muon", "--tune", "lr=1x,10x"])
            .args(["--tune-extend", "0", "--seeds", "2", "--out"])
            .arg(out)
            .args(&tiny("adamw", 4)[2..]);
        if let Some(l) = launcher {
            c.args(["--launcher", l]);
        }
        ok(c.output().unwrap())
    };
    let (one, jobs) = (tmp.path().join("one"), tmp.path().join("jobs"));
    race(&one, None);
    race(
        &jobs,
        Some("mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2"),
    );
    let runs: Vec<_> = std::fs::read_dir(&one)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("log.jsonl").is_file())
        .collect();
    assert_eq!(
        runs.len(),
        6,
        "2 grid points and 1 more seed, each: {runs:?}"
    );
    for r in runs {
        let name = r.file_name().unwrap();
        let (a, b) = (losses(&r), losses(&jobs.join(name)));
        assert_eq!(a.len(), b.len(), "{name:?}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((&x.0, x.1), (&y.0, y.1));
            assert!(
                (x.2 - y.2).abs() <= 1e-5 * x.2.abs(),
                "{name:?}: {x:?} vs {y:?}"
            );
        }
        let meta = std::fs::read_to_string(jobs.join(name).join("meta.json")).unwrap();
        assert!(meta.contains("\"world_size\": 2"), "{name:?}: {meta}");
    }
}
