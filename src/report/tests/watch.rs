//! `compare --watch`: each tick reads the runs again while another "process" (the sleep between
//! ticks) appends to them, a line at a time and cut mid-line, and rewrites the page and the plot.
use super::*;
use crate::report::watch::{watch, ReportSpec};
use std::io::Write as _;
use std::time::Duration;

#[test]
fn watch_follows_a_growing_run_through_partial_lines() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("runs").join("muon-s0");
    std::fs::create_dir_all(&run).unwrap();
    // The run has just started: its config only.
    std::fs::write(
        run.join("config.toml"),
        "seed = 0\n[train]\ntarget_loss = 5.0\n[optim]\nname = \"muon\"\n",
    )
    .unwrap();
    let lines = [
        r#"{"kind":"val","step":0,"val_loss":10.8,"tokens":0,"train_time_ms":0.0}"#,
        r#"{"kind":"train","step":1,"loss":10.7,"lrs":{"muon":0.001},"tokens":64,"step_ms":5.0,"train_time_ms":0.0}"#,
        r#"{"kind":"val","step":10,"val_loss":6.25,"tokens":640,"train_time_ms":50.0}"#,
        r#"{"kind":"val","step":20,"val_loss":4.75,"tokens":1280,"train_time_ms":100.0}"#,
    ];
    let spec = ReportSpec {
        runs: vec![dir.path().join("runs").display().to_string()],
        target: None,
        format: Format::Markdown,
        plot: Some(dir.path().join("live.png")),
        html: Some(dir.path().join("live.html")),
        plot_opts: Default::default(),
    };
    spec.check().unwrap();
    let log = run.join("log.jsonl");
    let mut tick = 0;
    let mut pages = Vec::new();
    let mut screen = Vec::new();
    // Between ticks the writer appends: two lines, then a line and half of the next, then the
    // rest. The page is read after every tick.
    let append = |tick: usize| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        match tick {
            1 => write!(f, "{}\n{}\n", lines[0], lines[1]).unwrap(),
            2 => write!(f, "{}\n{}", lines[2], &lines[3][..30]).unwrap(),
            _ => writeln!(f, "{}", &lines[3][30..]).unwrap(),
        }
    };
    watch(
        &spec,
        Duration::from_secs(3),
        &mut screen,
        false,
        Some(4),
        |d| {
            assert_eq!(d, Duration::from_secs(3));
            pages.push(std::fs::read_to_string(dir.path().join("live.html")).unwrap());
            tick += 1;
            append(tick);
        },
    )
    .unwrap();
    let screen = String::from_utf8(screen).unwrap();
    let frames: Vec<&str> = screen.split("speedrun compare --watch:").skip(1).collect();
    assert_eq!(frames.len(), 4, "{screen}");
    let status = |f: &str| {
        f.lines()
            .find(|l| l.starts_with("| muon-s0 |"))
            .unwrap()
            .to_string()
    };
    assert!(
        status(frames[0]).ends_with("| no data yet |"),
        "{}",
        frames[0]
    );
    assert!(
        status(frames[1]).contains("| 1 | 10.8000 |"),
        "{}",
        frames[1]
    );
    // Cut mid-line: the complete lines are read, the cut one waits for the next tick.
    assert!(
        status(frames[2]).contains("| 10 | 6.2500 |"),
        "{}",
        frames[2]
    );
    assert!(
        status(frames[3]).contains("| 20 | 4.7500 |")
            && status(frames[3]).contains("| 20 | 1280 |"),
        "{}",
        frames[3]
    );
    assert!(!screen.contains("error"), "{screen}");
    // The page was rewritten each tick and reloads itself.
    pages.push(std::fs::read_to_string(dir.path().join("live.html")).unwrap());
    assert!(pages[0].contains("no data yet") && pages[3].contains("4.7500"));
    assert!(pages.iter().all(|p| p.contains("\"refresh\":3")));
    assert!(std::fs::read(dir.path().join("live.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
}

#[test]
fn watch_shows_a_failed_read_and_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ReportSpec {
        runs: vec![format!("{}/race/*", dir.path().display())],
        target: None,
        format: Format::Markdown,
        plot: None,
        html: None,
        plot_opts: Default::default(),
    };
    let mut screen = Vec::new();
    let mut n = 0;
    watch(
        &spec,
        Duration::from_secs(1),
        &mut screen,
        true,
        Some(2),
        |_| {
            n += 1;
            // The race directory appears with its first run.
            let run = dir.path().join("race/adamw-s0");
            std::fs::create_dir_all(&run).unwrap();
            std::fs::write(run.join("config.toml"), "[optim]\nname = \"adamw\"\n").unwrap();
        },
    )
    .unwrap();
    let screen = String::from_utf8(screen).unwrap();
    assert_eq!(n, 1);
    assert!(
        screen.starts_with("\x1b[H\x1b[2J"),
        "a terminal is cleared each tick"
    );
    assert!(
        screen.contains("glob matched no run directory or log"),
        "{screen}"
    );
    assert!(screen.contains("| adamw-s0 | adamw |"), "{screen}");
}
