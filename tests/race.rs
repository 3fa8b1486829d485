//! `speedrun race --tune` end to end on a tiny model (2 layers, width 32, 6 steps): the chosen
//! point is the best of its table under the stated rule, recomputed here from each run's own
//! `log.jsonl`; the grid grows at an edge and stays as it is when bracketed; a rerun trains
//! nothing; `--jobs 2` gives the runs of `--jobs 1`; the verdict's statistics are `compare`'s; a
//! signal leaves the race resumable by the same command; and bad input is one line, before any
//! training, leaving nothing behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const TARGET: f64 = 10.7;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_speedrun"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RAYON_NUM_THREADS", "2")
        .env_remove("SPEEDRUN_DATA");
    c
}

fn run(args: &[String]) -> Output {
    bin().args(args).output().expect("run speedrun")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(args: &[String]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "speedrun {args:?} failed:\n{}",
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A race of `optims` into `out` on the tiny model (`steps` steps), then `extra` flags.
fn race(out: &Path, optims: &str, steps: usize, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["race", "--no-progress", "--optims", optims, "--out"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.push(out.display().to_string());
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
        "train.checkpoint_every=0",
        &format!("train.target_loss={TARGET}"),
        &format!("train.steps={steps}"),
    ] {
        a.extend(["--set".to_string(), s.to_string()]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn records(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A seed-0 grid point as its own log tells it.
#[derive(Debug, Clone, Copy)]
struct Point {
    lr: f64,
    /// First validation at or below the target.
    steps: Option<u64>,
    final_loss: f64,
    diverged: bool,
}

/// The matrix lr of a run, from its saved config.
fn lr_of(dir: &Path) -> f64 {
    let cfg: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.join("config.toml")).unwrap()).unwrap();
    let section = cfg["optim"]["name"].as_str().unwrap().replace('-', "_");
    cfg["optim"][&section]["lr"].as_float().unwrap()
}

fn point(dir: &Path) -> Point {
    let log = records(dir);
    let vals: Vec<&Value> = log.iter().filter(|r| r["kind"] == "val").collect();
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    Point {
        lr: lr_of(dir),
        steps: vals
            .iter()
            .find(|v| v["val_loss"].as_f64().unwrap() <= TARGET)
            .map(|v| v["step"].as_u64().unwrap()),
        final_loss: vals.last().unwrap()["val_loss"].as_f64().unwrap(),
        diverged: summary["diverged_at"].is_u64(),
    }
}

/// The documented rule, written out again: fewest steps to the target, then (ties and runs that
/// never reach it) the lowest final val loss; diverged runs last; then the lower lr.
fn best(points: &[Point]) -> Point {
    let key = |p: &Point| {
        (
            p.diverged,
            p.steps.is_none(),
            p.steps.unwrap_or(0),
            p.final_loss,
            p.lr,
        )
    };
    *points
        .iter()
        .min_by(|a, b| key(a).partial_cmp(&key(b)).unwrap())
        .unwrap()
}

/// The seed-0 runs of contestant `label` in `out`.
fn grid_runs(out: &Path, label: &str) -> Vec<Point> {
    let mut pts: Vec<Point> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with(&format!("{label}-lr")) && n.ends_with("-s0")
        })
        .map(|d| point(&d))
        .collect();
    pts.sort_by(|a, b| a.lr.total_cmp(&b.lr));
    pts
}

/// What the grid should have grown to, replayed from the runs' own results: start from `first`,
/// and while the best point is on an edge (and the allowance lasts), add the next point outward
/// at the edge's own ratio. Returns the lrs and the extensions used.
fn replay(first: &[f64], ran: &[Point], extend: usize) -> (Vec<f64>, usize) {
    let find = |lr: f64| {
        *ran.iter()
            .find(|p| (p.lr / lr - 1.0).abs() < 1e-4)
            .unwrap_or_else(|| panic!("lr {lr} was never run: {ran:?}"))
    };
    let mut lrs = first.to_vec();
    for ext in 0..=extend {
        let pts: Vec<Point> = lrs.iter().map(|&lr| find(lr)).collect();
        let b = best(&pts).lr;
        let n = lrs.len();
        let (low, high) = (b == pts[0].lr, b == pts[n - 1].lr);
        if !(low || high) || ext == extend {
            return (pts.iter().map(|p| p.lr).collect(), ext);
        }
        if high {
            lrs.push(find(lrs[n - 1] * lrs[n - 1] / lrs[n - 2]).lr);
        } else {
            lrs.insert(0, find(lrs[0] * lrs[0] / lrs[1]).lr);
        }
    }
    unreachable!()
}

fn report_json(out: &Path) -> Value {
    let mut args = ["compare", "--race", "--format", "json"]
        .map(String::from)
        .to_vec();
    args.push(out.display().to_string());
    serde_json::from_str(&ok(&args)).unwrap()
}

/// Log records and summary of a run without what depends on the clock or the thread count.
fn timeless(dir: &Path) -> Vec<Value> {
    let strip = |mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.retain(|k, _| {
                !(k.contains("time") || k.ends_with("ms") || k == "tok_per_s" || k == "device")
            });
        }
        v
    };
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let mut all: Vec<Value> = records(dir).into_iter().map(strip).collect();
    all.push(strip(summary));
    all
}

fn mtimes(out: &Path) -> BTreeMap<PathBuf, std::time::SystemTime> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path().join("log.jsonl"))
        .filter(|p| p.is_file())
        .map(|p| {
            let t = p.metadata().unwrap().modified().unwrap();
            (p, t)
        })
        .collect()
}

#[test]
fn a_tuned_race_picks_the_best_point_grows_at_edges_and_reruns_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("race");
    let args = race(
        &out,
        "adamw,muon",
        6,
        &["--tune", "lr=1x,10x,100x", "--seeds", "2"],
    );
    let first = ok(&args);
    assert!(first.contains("## Verdict"), "{first}");
    let rep = report_json(&out);
    let mut grew = 0;
    let mut bracketed_at_once = 0;
    for c in rep["contestants"].as_array().unwrap() {
        let label = c["label"].as_str().unwrap();
        let base = if label == "adamw" { 0.0018 } else { 0.00036 };
        let ran = grid_runs(&out, label);
        let (lrs, ext) = replay(&[base, 10.0 * base, 100.0 * base], &ran, 2);
        // The grid grew exactly where the rule says, and no further.
        assert_eq!(
            ran.len(),
            lrs.len(),
            "{label}: ran {ran:?}, expected {lrs:?}"
        );
        assert_eq!(c["extensions"], ext, "{label}");
        // The chosen point is the best of the table.
        let chosen: Vec<&Value> = c["points"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["chosen"] == true)
            .collect();
        assert_eq!(chosen.len(), 1, "{label}");
        let b = best(&ran);
        assert!(
            (chosen[0]["values"][0].as_f64().unwrap() / b.lr - 1.0).abs() < 1e-9,
            "{label}"
        );
        assert_eq!(c["tuned"], "bracketed", "{label}: {c}");
        grew += usize::from(ext > 0);
        bracketed_at_once += usize::from(ext == 0);
    }
    assert!(
        grew > 0 && bracketed_at_once > 0,
        "both cases exercised: {rep}"
    );
    for f in [
        "report.md",
        "report.html",
        "tuning.png",
        "race.png",
        "runs.html",
        "race.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("id=\"tuning-plot\"><svg") && page.contains("id=\"verdict\""));

    // The verdict's statistics are those `compare` gives the same runs.
    let mut cmp_args = vec!["compare".to_string(), "--format".into(), "json".into()];
    for c in rep["contestants"].as_array().unwrap() {
        for r in c["group"]["runs"].as_array().unwrap() {
            cmp_args.push(out.join(r.as_str().unwrap()).display().to_string());
        }
    }
    let cmp: Value = serde_json::from_str(&ok(&cmp_args)).unwrap();
    let group_of = |runs: &Value| {
        cmp["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["runs"] == *runs)
            .unwrap_or_else(|| panic!("no group of {runs} in {cmp}"))
            .clone()
    };
    for c in rep["contestants"].as_array().unwrap() {
        let g = group_of(&c["group"]["runs"]);
        for k in [
            "final_loss_mean",
            "final_loss_std",
            "track3_margin",
            "steps_mean",
            "final_losses",
        ] {
            assert_eq!(c["group"][k], g[k], "{k}");
        }
    }
    let pair = &rep["pairs"][0];
    let test = &cmp["comparisons"][0];
    assert_eq!(pair["final_loss"]["p"], test["final_loss"]["p"]);
    assert_eq!(pair["final_loss"]["df"], test["final_loss"]["df"]);
    let t = |v: &Value| v["final_loss"]["t"].as_f64().unwrap().abs();
    assert_eq!(t(pair), t(test));
    let mean = |label: &Value| {
        let c = rep["contestants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["label"] == *label);
        let g = &c.unwrap()["group"];
        (
            g["final_loss_mean"].as_f64().unwrap(),
            g["final_losses"].as_array().unwrap().len() as f64,
        )
    };
    let ((lb, nb), (lo, no)) = (mean(&pair["best"]), mean(&pair["other"]));
    // Track 3's pairwise rule at equal run lengths: (Δ final loss) / √(1/n1 + 1/n2).
    let margin = (lo - lb) / (1.0 / nb + 1.0 / no).sqrt();
    assert!((pair["track3_pairwise"].as_f64().unwrap() - margin).abs() < 1e-12);

    // A rerun trains nothing and writes the same report.
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let before = mtimes(&out);
    let again = ok(&args);
    assert_eq!(
        again.matches("ended earlier, skipped").count(),
        before.len(),
        "{again}"
    );
    assert!(
        !again.contains("step:") && !again.contains(" -> "),
        "{again}"
    );
    assert_eq!(mtimes(&out), before);
    assert_eq!(std::fs::read_to_string(out.join("report.md")).unwrap(), md);
    // `compare --race` rebuilds it from the run directories.
    std::fs::remove_file(out.join("report.md")).unwrap();
    let mut rebuild = vec!["compare".to_string(), "--race".into()];
    rebuild.push(out.display().to_string());
    ok(&rebuild);
    assert_eq!(std::fs::read_to_string(out.join("report.md")).unwrap(), md);

    // A changed --set is another race: refused, nothing retrained.
    let mut changed = args.clone();
    changed.extend(["--set".into(), "train.steps=8".into()]);
    let o = run(&changed);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("differs in train.steps"), "{}", text(&o));
    assert_eq!(mtimes(&out), before);

    // --jobs 2: the same runs, bit for bit, and the same report.
    let out2 = tmp.path().join("race2");
    let mut par = race(
        &out2,
        "adamw,muon",
        6,
        &["--tune", "lr=1x,10x,100x", "--seeds", "2"],
    );
    par.extend(["--jobs".into(), "2".into()]);
    ok(&par);
    let names = |o: &Path| {
        mtimes(o)
            .into_keys()
            .map(|p| p.parent().unwrap().file_name().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&out), names(&out2));
    for n in names(&out) {
        assert_eq!(timeless(&out.join(&n)), timeless(&out2.join(&n)), "{n:?}");
    }
    let mut rep2 = report_json(&out2);
    rep2["command"] = rep["command"].clone();
    assert_eq!(rep2, rep);
}

#[test]
fn an_interrupted_race_is_resumed_by_the_same_command() {
    let tmp = tempfile::tempdir().unwrap();
    for jobs in ["1", "2"] {
        let out = tmp.path().join(format!("race{jobs}"));
        let args = race(&out, "adamw,muon", 16, &["--jobs", jobs]);
        let child = bin()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let log = out.join("adamw-s0").join("log.jsonl");
        let t0 = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("\"kind\":\"train\"")
        {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no training started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: kill(2) on the child this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(130), "--jobs {jobs}: {}", text(&o));
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.contains("run the same race command again") && !last.contains("--resume"),
            "--jobs {jobs}: {err}"
        );
        assert!(out
            .join("adamw-s0/checkpoints")
            .read_dir()
            .unwrap()
            .next()
            .is_some());
        let again = ok(&args);
        assert!(again.contains("resumed from"), "--jobs {jobs}: {again}");
        for d in ["adamw-s0", "muon-s0"] {
            let s = std::fs::read_to_string(out.join(d).join("summary.json")).unwrap();
            assert!(s.contains("\"finished\": true"), "{d}: {s}");
        }
    }
}

#[test]
fn bad_race_input_is_one_line_before_any_training() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("race");
    let long = "x".repeat(300);
    let long_label = format!("muon@{long}");
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "adamw,muon",
            vec!["--tune", "momentum_x=1x,2x"],
            "no contestant has momentum_x",
        ),
        ("muon", vec!["--tune", "lr="], "empty grid"),
        ("muon", vec!["--tune", "lr=fast,slow"], "not a number"),
        ("muon", vec!["--tune", "lr=0x,1x"], "must be > 0"),
        ("muon", vec!["--tune", "lr=-1x,1x"], "must be > 0"),
        ("muon", vec!["--tune", "lr=1x"], "at least 2 values"),
        ("muon", vec!["--seeds", "0"], "--seeds 0"),
        ("muon", vec!["--jobs", "0"], "--jobs 0"),
        (
            "muon",
            vec!["--plot", "/nonexistent/x.svg"],
            "/nonexistent does not exist",
        ),
        ("muon", vec!["--set", "seed=3"], "seed cannot be overridden"),
        (",", vec![], "no contestant named"),
        (
            "muon:optim.name=adamw",
            vec![],
            "optim.name cannot be overridden",
        ),
        (&long_label, vec![], "long"),
    ];
    for (optims, extra, needle) in &cases {
        let o = run(&race(&out, optims, 6, extra));
        let err = String::from_utf8_lossy(&o.stderr);
        let what = format!("--optims {:.20} {extra:?}", optims);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", text(&o));
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{what}: {err}"
        );
        // Nothing was written: no race directory, no initial weights.
        assert!(!out.exists(), "{what} left {}", out.display());
    }
}
