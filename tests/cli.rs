//! End-to-end tests of the `speedrun` binary: real (tiny) trainings, then `compare` and `race` on the
//! run directories they wrote, and the one-line error contract for bad input.

use std::path::Path;
use std::process::{Command, Output};

fn speedrun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_speedrun"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("run speedrun")
}

fn ok(args: &[&str]) -> String {
    let o = speedrun(args);
    assert!(
        o.status.success(),
        "speedrun {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A 2-layer width-32 model, 6 steps of 256 tokens: seconds in the dev profile.
const TINY: &[&str] = &[
    "--set",
    "model.n_layer=2",
    "--set",
    "model.n_head=2",
    "--set",
    "model.n_embd=32",
    "--set",
    "model.seq_len=32",
    "--set",
    "train.batch_tokens=256",
    "--set",
    "train.micro_batch=4",
    "--set",
    "train.steps=6",
    "--set",
    "train.warmdown_steps=2",
    "--set",
    "train.val_every=2",
    "--set",
    "train.val_tokens=256",
    "--set",
    "train.val_micro_batch=4",
    "--set",
    "train.checkpoint_every=0",
    "--set",
    "train.target_loss=10.7",
];

fn jsonl(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn help_lists_the_subcommands() {
    let out = ok(&["--help"]);
    for sub in [
        "data", "train", "init", "race", "compare", "export", "bench",
    ] {
        assert!(out.contains(sub), "--help lacks {sub}:\n{out}");
    }
}

#[test]
fn compare_table_matches_the_logs_of_real_trainings() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    for (optim, seed) in [("muon", "0"), ("muon", "1"), ("adamw", "0")] {
        let mut args = vec![
            "train",
            "--runs-dir",
            runs,
            "--optim",
            optim,
            "--seed",
            seed,
            "--no-progress",
        ];
        args.extend_from_slice(TINY);
        let out = ok(&args);
        assert!(out.contains("val_loss:"), "{out}");
    }
    let plot = tmp.path().join("cmp.svg");
    let html = tmp.path().join("cmp.html");
    let json = ok(&[
        "compare",
        runs,
        "--format",
        "json",
        "--plot",
        plot.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    let rep: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = rep["runs"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        let dir = Path::new(row["dir"].as_str().unwrap());
        let log = jsonl(dir);
        let vals: Vec<&serde_json::Value> = log.iter().filter(|r| r["kind"] == "val").collect();
        let last = vals.last().unwrap();
        assert_eq!(row["final_step"], last["step"]);
        assert_eq!(row["final_val_loss"].as_f64(), last["val_loss"].as_f64());
        // Steps/tokens/time to target: the first val record at or below the run's target.
        let first = vals
            .iter()
            .find(|v| v["val_loss"].as_f64().unwrap() <= 10.7);
        match first {
            Some(v) => {
                assert_eq!(row["reached"], true);
                assert_eq!(row["target_step"], v["step"]);
                assert_eq!(row["target_tokens"], v["tokens"]);
                assert_eq!(
                    row["target_train_time_ms"].as_f64(),
                    v["train_time_ms"].as_f64()
                );
                // The trainer's own target record agrees.
                let t = log.iter().find(|r| r["kind"] == "target").unwrap();
                assert_eq!(t["step"], v["step"]);
            }
            None => assert_eq!(row["reached"], false),
        }
    }
    // The two muon seeds form one group of n = 2.
    let groups = rep["groups"].as_array().unwrap();
    assert!(
        groups
            .iter()
            .any(|g| g.to_string().contains("muon") && g["n"] == 2),
        "{groups:?}"
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("id=\"report-data\"") && page.contains("uPlot"));
    // The same runs as TensorBoard event files, one directory per run.
    let tb = tmp.path().join("tb");
    let out = ok(&["export", "tensorboard", runs, "--out", tb.to_str().unwrap()]);
    assert!(out.contains("tensorboard --logdir"), "{out}");
    for row in rows {
        let name = Path::new(row["dir"].as_str().unwrap()).file_name().unwrap();
        let files: Vec<_> = std::fs::read_dir(tb.join(name)).unwrap().collect();
        assert_eq!(files.len(), 1, "{name:?}");
    }
    // --target moves the target: nothing reaches 0.1.
    let csv = ok(&["compare", runs, "--format", "csv", "--target", "0.1"]);
    assert_eq!(csv.lines().count(), 4);
    assert!(csv.lines().skip(1).all(|l| l.contains(",false,")), "{csv}");
}

#[test]
fn race_runs_every_contestant_then_skips_finished_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("race");
    let out = out_dir.to_str().unwrap();
    let mut args = vec![
        "race",
        "--optims",
        "adamw,muon",
        "--seeds",
        "2",
        "--out",
        out,
        "--no-progress",
    ];
    args.extend_from_slice(TINY);
    let first = ok(&args);
    for d in ["adamw-s0", "muon-s0", "adamw-s1", "muon-s1"] {
        assert!(
            out_dir.join(d).join("summary.json").is_file(),
            "{d} missing"
        );
    }
    // Same seed, same initial weights for both optimizers: the step-0 validation is identical.
    let v0 = |d: &str| {
        jsonl(&out_dir.join(d))
            .into_iter()
            .find(|r| r["kind"] == "val")
            .unwrap()["val_loss"]
            .clone()
    };
    assert_eq!(v0("adamw-s0"), v0("muon-s0"));
    assert_ne!(v0("muon-s0"), v0("muon-s1"));
    assert!(
        first.contains("| muon"),
        "race ends with the table:\n{first}"
    );
    assert!(out_dir.join("race.svg").is_file());
    let again = ok(&args);
    assert_eq!(again.matches("skipped").count(), 4, "{again}");
}

#[test]
fn bad_input_is_a_one_line_error_and_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["data", "inspect", "/nonexistent/shards"],
            "/nonexistent/shards",
        ),
        (
            &["train", "--config", "/nonexistent.toml"],
            "/nonexistent.toml",
        ),
        (&["train", "--set", "train.nosuchfield=1"], "nosuchfield"),
        (
            &["train", "--optim", "sgd", "--set", "train.steps=1"],
            "sgd",
        ),
        (
            &[
                "train",
                "--init-from",
                "Cargo.toml",
                "--name",
                "x",
                "--runs-dir",
                runs,
            ],
            "Cargo.toml",
        ),
    ];
    let export_args = ["export", "tensorboard", "/nonexistent/run", "--out", runs];
    // 100,000 nested arrays: toml's own message quotes the whole line (200 KB).
    let deep = tmp.path().join("deep.toml");
    std::fs::write(
        &deep,
        format!("a = {}{}", "[".repeat(100_000), "]".repeat(100_000)),
    )
    .unwrap();
    let deep = deep.to_str().unwrap();
    let long_name = "a".repeat(300);
    let text = tmp.path().join("t.txt");
    std::fs::write(&text, "some text").unwrap();
    let text = text.to_str().unwrap();
    let tok_out = tmp.path().join("tok");
    let tok_out = tok_out.to_str().unwrap();
    let train = |more: &[&'static str]| {
        let mut a = vec!["train", "--runs-dir", runs, "--name", "x"];
        a.extend_from_slice(more);
        a
    };
    let set = |kv: &'static str| train(&["--set", kv]);
    let more: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--threads", "100000", "train"],
            "--threads 100000: use 1 to",
        ),
        (
            vec!["bench", "diag", "--methods", "newton-muon", "--n-embd", "0"],
            "--n-embd",
        ),
        (set("model.n_layer=0"), "model.n_layer = 0 must be > 0"),
        (
            set("optim.adamw.betas=[2, 0.5]"),
            "optim.adamw.betas[0] = 2",
        ),
        (set("optim.muon.momentum=1.5"), "optim.muon.momentum = 1.5"),
        (set("train.target_loss=nan"), "train.target_loss = NaN"),
        (
            set("seed=99999999999999999999"),
            "99999999999999999999 is out of range",
        ),
        (train(&["--seed", "18446744073709551615"]), "--seed"),
        (vec!["train", "-c", deep], "recursion limit"),
        (
            vec!["compare", "tests/fixtures/runs", "--target", "nan"],
            "--target",
        ),
        (
            vec![
                "data", "tokenize", text, "--out", tok_out, "--prefix", "../evil",
            ],
            "--prefix",
        ),
    ];
    let names: Vec<(Vec<&str>, &str)> = ["a b", "é", "*", "a:b", long_name.as_str()]
        .into_iter()
        .map(|n| (vec!["train", "--runs-dir", runs, "--name", n], "--name"))
        .collect();
    let cases = [
        cases,
        &[
            // Checked before any run is read: the run named does not even exist.
            (
                &["compare", "/nonexistent/run", "--plot", "p.jpg"][..],
                "p.jpg: unsupported plot format",
            ),
            (&["compare", "/nonexistent/run", "--x", "epochs"], "epochs"),
            (
                &[
                    "compare",
                    "/nonexistent/run",
                    "--html",
                    "/nonexistent/dir/r.html",
                ],
                "/nonexistent/dir does not exist",
            ),
            (
                &["compare", "/nonexistent/run"],
                "/nonexistent/run: no such run directory",
            ),
            (
                &["compare", "Cargo.toml"],
                "Cargo.toml: not a modded-nanogpt log",
            ),
            (&export_args[..], "/nonexistent/run"),
        ][..],
    ]
    .concat();
    let owned: Vec<(&[&str], &str)> = more
        .iter()
        .chain(&names)
        .map(|(a, n)| (&a[..], *n))
        .collect();
    let cases = [&cases[..], &owned[..]].concat();
    for (args, needle) in &cases {
        let o = speedrun(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: not one line: {err}");
        assert!(
            lines[0].len() < 2100,
            "{args:?}: a {}-byte line",
            lines[0].len()
        );
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(needle),
            "{args:?}: {err}"
        );
    }
    // A failed start leaves no run directory behind, a refused prefix writes nowhere, and no
    // error line is long.
    assert!(!tmp.path().join("x").exists());
    assert!(!tmp.path().join("evil_val_000000.bin").exists() && !Path::new(tok_out).exists());
}
