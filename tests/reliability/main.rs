//! What happens around a run when people use it: signals, divergence, two writers, bad names,
//! failed starts, stale temporaries, resumes from the run itself, data roots. Each test drives the
//! real binary on the shipped tinyshakespeare shards with a 2-layer, width-32 model.
//!
//! `basics`: the first cases (signals, locks, names, failed starts, damaged checkpoints).
//! `signals`: validations owed exactly once whatever stops a run, `timeout`, SIGHUP, a closed
//! stdout. `run_dir`: what a start may find in its directory. `resume`: damaged or edited state
//! that a resume meets.

mod basics;
mod resume;
mod run_dir;
mod signals;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_speedrun"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RAYON_NUM_THREADS", "1")
        .env_remove("SPEEDRUN_DATA");
    c
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run speedrun")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The tiny model with `steps` steps; every `--set` after it wins.
pub fn tiny(steps: usize) -> Vec<String> {
    let mut v = Vec::new();
    for s in [
        "model.n_layer=2",
        "model.n_head=2",
        "model.n_embd=32",
        "model.seq_len=32",
        "train.batch_tokens=256",
        "train.micro_batch=4",
        "train.warmdown_steps=2",
        "train.val_every=2",
        "train.val_tokens=256",
        "train.val_micro_batch=4",
        "train.checkpoint_every=1",
        "train.target_loss=10.7",
    ] {
        v.extend(["--set".to_string(), s.to_string()]);
    }
    v.extend(["--set".to_string(), format!("train.steps={steps}")]);
    v
}

pub fn train_args<'a>(runs: &'a str, name: &'a str, extra: &'a [String]) -> Vec<&'a str> {
    let mut a = vec!["train", "--runs-dir", runs, "--name", name, "--no-progress"];
    a.extend(extra.iter().map(String::as_str));
    a
}

/// Wait until `dir/log.jsonl` holds a train record, or panic after a minute.
pub fn wait_for_training(dir: &Path, child: &mut Child) {
    wait_for_line(dir, child, "\"kind\":\"train\"");
}

pub fn spawn(args: &[&str]) -> Child {
    bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn speedrun")
}

pub fn kill(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

pub fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// `args` with one more `--set KEY=VALUE`.
pub fn with(mut args: Vec<String>, set: &str) -> Vec<String> {
    args.extend(["--set".to_string(), set.to_string()]);
    args
}

/// Wait until `dir/log.jsonl` holds a line containing `needle`, or panic after a minute or when
/// the process ends first.
pub fn wait_for_line(dir: &Path, child: &mut Child, needle: &str) {
    let t0 = Instant::now();
    loop {
        let log = std::fs::read_to_string(dir.join("log.jsonl")).unwrap_or_default();
        if log.contains(needle) {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("the run ended ({st}) before its log had {needle}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no {needle} after 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every record of a run's log as (kind, step, loss bits): what a resumed run must share with
/// a straight one (times differ between runs).
pub fn records(dir: &Path) -> Vec<(String, u64, String)> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            let loss = r.get("loss").or(r.get("val_loss")).and_then(|v| v.as_f64());
            let bits = loss.map_or("null".to_string(), |x| format!("{:016x}", x.to_bits()));
            (
                r["kind"].as_str().unwrap().to_string(),
                r["step"].as_u64().unwrap(),
                bits,
            )
        })
        .collect()
}

/// The step in "interrupted at step N (…)" on the last line of `err`.
pub fn interrupted_step(err: &str) -> usize {
    let line = err.lines().last().unwrap_or("");
    assert!(
        line.starts_with("interrupted at step ") && line.ends_with("resume with --resume"),
        "{err}"
    );
    line["interrupted at step ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
