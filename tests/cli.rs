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

/// `speedrun ARGS` exits 1 with one line on stderr, `error: …` containing `needle`.
fn fails_in_one_line(args: &[&str], needle: &str) {
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
        "data", "train", "init", "race", "sample", "eval", "compare", "export", "bench",
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
    assert!(out_dir.join("race.png").is_file());
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
        fails_in_one_line(args, needle);
    }
    // A failed start leaves no run directory behind, a refused prefix writes nowhere, and no
    // error line is long.
    assert!(!tmp.path().join("x").exists());
    assert!(!tmp.path().join("evil_val_000000.bin").exists() && !Path::new(tok_out).exists());
}

/// A TINY run with checkpoints at steps 4 and 6 and samples at every validation, trained once for
/// the tests below (each copies it before changing anything).
fn trained_run() -> &'static Path {
    static RUN: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().to_str().unwrap();
        let mut args = vec!["train", "--runs-dir", runs, "--name", "r", "--no-progress"];
        args.extend_from_slice(TINY);
        args.extend_from_slice(&[
            "--set",
            "train.checkpoint_every=2",
            "--set",
            "train.sample_every=1",
        ]);
        let out = ok(&args);
        assert!(out.contains("step:6/6 sample: \"ROMEO:\\n"), "{out}");
        tmp
    })
    .path()
    .join("r")
    .leak()
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn eval_gives_back_the_runs_last_val_loss_and_sample_reads_its_newest_checkpoint() {
    let run = trained_run();
    let run_s = run.to_str().unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let rows: serde_json::Value =
        serde_json::from_str(&ok(&["eval", run_s, "--format", "json"])).unwrap();
    assert_eq!(rows[0]["step"], 6);
    // Bit for bit: the same code, micro-batches and dtype as the run's own validation.
    assert_eq!(rows[0]["loss"].as_f64(), summary["final_val_loss"].as_f64());
    // Several checkpoints, one table; markdown by default.
    let ckpt4 = run.join("checkpoints/step_000004");
    let md = ok(&["eval", run_s, ckpt4.to_str().unwrap()]);
    assert_eq!(md.lines().count(), 4, "{md}");
    let log = jsonl(run);
    let val4 = log
        .iter()
        .find(|r| r["kind"] == "val" && r["step"] == 4)
        .unwrap();
    assert!(
        md.contains(&format!("| {:.6} |", val4["val_loss"].as_f64().unwrap())),
        "{md}"
    );

    // Greedy with the cache and without it: the same 40 tokens (past the 32-token context); the
    // run's own last sample record is the first 32 of them.
    let greedy = |extra: &[&str]| {
        let mut a = vec![
            "sample",
            run_s,
            "--prompt",
            "ROMEO:\n",
            "--temperature",
            "0",
        ];
        a.extend_from_slice(&["--tokens", "40", "--format", "json"]);
        a.extend_from_slice(extra);
        json_lines(&ok(&a)).remove(0)
    };
    let cached = greedy(&[]);
    assert_eq!(cached["tokens"], greedy(&["--no-cache"])["tokens"]);
    assert_eq!(cached["step"], 6);
    let last = log.iter().rfind(|r| r["kind"] == "sample").unwrap();
    assert_eq!(last["step"], 6);
    let first32: Vec<serde_json::Value> = cached["tokens"].as_array().unwrap()[..32].to_vec();
    assert_eq!(last["tokens"].as_array().unwrap(), &first32);

    // A seed gives the same samples; another seed others.
    let drawn = |seed: &str| {
        ok(&[
            "sample",
            run_s,
            "--seed",
            seed,
            "--samples",
            "2",
            "--tokens",
            "12",
            "--format",
            "json",
        ])
    };
    let (a, b) = (json_lines(&drawn("4")), json_lines(&drawn("4")));
    assert_eq!(a.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["tokens"], y["tokens"]);
    }
    assert_ne!(a[0]["tokens"], a[1]["tokens"]);
    assert_ne!(a[0]["tokens"], json_lines(&drawn("5"))[0]["tokens"]);
    // Text: the prompt, then the continuation, streamed to stdout.
    let text = ok(&["sample", run_s, "--prompt", "ROMEO:", "--tokens", "8"]);
    assert!(
        text.starts_with("ROMEO:") && text.ends_with('\n') && text.len() > 8,
        "{text:?}"
    );
}

/// The shape of tests/fixtures/sample_gpt.safetensors (scripts/golden_sample.py).
const SAMPLE_GPT_SHAPE: &[&str] = &[
    "-c",
    "shakespeare-tiny",
    "--set",
    "model.vocab_size=97",
    "--set",
    "model.n_layer=2",
    "--set",
    "model.n_head=2",
    "--set",
    "model.n_embd=32",
    "--set",
    "model.seq_len=16",
];

// `.venv/bin/python scripts/golden_sample.py` (torch 2.15.0 CPU, fp32) printed:
// final train loss 3.2632
// prompt 76 11 32 13 89
// tokens 54 36 27 26 37 27 38 93 17 70 10 27 8 44 67 82 96 1 78 8 55 94 8 15 27 56 1 41 26 35 86 6
// smallest top-2 logit gap 0.1403
#[test]
fn sample_reproduces_the_pytorch_golden_tokens() {
    let mut args = vec![
        "sample",
        "tests/fixtures/sample_gpt.safetensors",
        "--prompt",
        "m,A.z",
    ];
    args.extend_from_slice(&["--temperature", "0", "--tokens", "32", "--format", "json"]);
    args.extend_from_slice(SAMPLE_GPT_SHAPE);
    let out = json_lines(&ok(&args)).remove(0);
    assert_eq!(
        out["prompt_tokens"],
        serde_json::json!([76, 11, 32, 13, 89])
    );
    let golden =
        "54 36 27 26 37 27 38 93 17 70 10 27 8 44 67 82 96 1 78 8 55 94 8 15 27 56 1 41 26 35 86 6";
    let want: Vec<u32> = golden.split(' ').map(|t| t.parse().unwrap()).collect();
    assert_eq!(out["tokens"], serde_json::json!(want));
    assert_eq!(out["step"], serde_json::Value::Null);
}

#[test]
fn sample_and_eval_refuse_bad_input_in_one_line() {
    let run = trained_run();
    let tmp = tempfile::tempdir().unwrap();
    // A copy whose newest checkpoint is damaged: --resume's rule takes the one before it.
    let copy = tmp.path().join("copy");
    let cp = Command::new("cp")
        .args(["-r", run.to_str().unwrap(), copy.to_str().unwrap()])
        .status();
    assert!(cp.unwrap().success());
    let newest = copy.join("checkpoints/step_000006");
    let weights = newest.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&weights, bytes).unwrap();
    let o = speedrun(&[
        "sample",
        copy.to_str().unwrap(),
        "--tokens",
        "3",
        "--format",
        "json",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.starts_with("warning: ") && err.contains("checksum mismatch"),
        "{err}"
    );
    assert_eq!(
        json_lines(&String::from_utf8_lossy(&o.stdout))[0]["step"],
        4
    );
    let truncated = tmp.path().join("cut.safetensors");
    std::fs::write(
        &truncated,
        &std::fs::read(run.join("checkpoints/step_000004/model.safetensors")).unwrap()[..1000],
    )
    .unwrap();
    let long = "to be or not ".repeat(10);
    let (run_s, newest_s, cut) = (
        run.to_str().unwrap(),
        newest.to_str().unwrap(),
        truncated.to_str().unwrap(),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["sample", "/nonexistent/run"],
            "/nonexistent/run: no such run directory",
        ),
        (
            vec!["eval", "/nonexistent/run"],
            "/nonexistent/run: no such run directory",
        ),
        (vec!["sample", newest_s], "checksum mismatch"),
        (
            vec!["sample", cut, "-c", "shakespeare-tiny"],
            "cut.safetensors: cannot read safetensors",
        ),
        (vec!["sample", cut], "has no config; give its shape with -c"),
        (
            vec!["sample", run_s, "-c", "shakespeare-tiny"],
            "apply to a bare weights file",
        ),
        (
            vec!["sample", run_s, "--prompt", &long],
            "tokens, longer than the model's context (model.seq_len = 32)",
        ),
        (vec!["sample", run_s, "--top-p", "0"], "--top-p"),
        (vec!["sample", run_s, "--top-p", "1.5"], "--top-p"),
        (
            vec!["sample", run_s, "--temperature", "-1"],
            "--temperature",
        ),
        (vec!["eval", run_s, "--tokens", "100"], "--tokens = 100"),
        (
            vec!["eval", run_s, "--data", "/nonexistent/*.bin"],
            "/nonexistent/*.bin",
        ),
        (
            // A vocabulary of 97 meets shards of GPT-2 ids.
            [
                &["eval", "tests/fixtures/sample_gpt.safetensors"][..],
                SAMPLE_GPT_SHAPE,
            ]
            .concat(),
            "is >= the vocabulary size 97",
        ),
    ];
    for (args, needle) in &cases {
        fails_in_one_line(args, needle);
    }
}

#[test]
fn bench_sample_times_both_modes() {
    let mut args = vec!["bench", "sample", "--device", "cpu", "--repeats", "2"];
    args.extend_from_slice(&["--tokens", "24", "--prompt-tokens", "4"]);
    // Past the 16-token context: both modes slide.
    args.extend_from_slice(&SAMPLE_GPT_SHAPE[2..]);
    let out = ok(&args);
    assert!(
        out.contains("L2/D32/T16 vocab 97, prompt 4 + 24 new tokens"),
        "{out}"
    );
    for mode in ["cache", "nocache"] {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("speedrun  {mode} ")));
        let cols: Vec<&str> = row
            .unwrap_or_else(|| panic!("{out}"))
            .split_whitespace()
            .collect();
        // side, mode, first-token ms, tok/s, then the tok/s of each of the 2 repeats.
        assert_eq!(cols.len(), 6, "{out}");
        assert!(cols[3].parse::<f64>().unwrap() > 0.0, "{out}");
    }
}
