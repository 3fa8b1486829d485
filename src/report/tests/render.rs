//! The renderings of a comparison (csv, json, markdown, plots, HTML) and the `compare` command
//! line, on the fixture runs.

use super::*;

/// Minimal RFC-4180 line splitter for reading our CSV back.
fn csv_split(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut q, mut chars) =
        (vec![], String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, q) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            ('"', _) => q = !q,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[test]
fn csv_json_markdown_parse_back() {
    let runs = all_fixtures();
    let rows = run_rows(&runs, Some(3.3));
    let opts = |format| CompareOpts {
        target: Some(3.3),
        format,
    };

    let csv = render(&runs, &opts(Format::Csv));
    let lines: Vec<Vec<String>> = csv.lines().map(csv_split).collect();
    assert_eq!(lines.len(), rows.len() + 1);
    let col = |name: &str| lines[0].iter().position(|h| h == name).unwrap();
    for (cells, r) in lines[1..].iter().zip(&rows) {
        assert_eq!(cells.len(), lines[0].len());
        assert_eq!(cells[col("run")], r.name);
        assert_eq!(cells[col("hyperparameters")], r.hparams);
        assert_eq!(
            cells[col("device")],
            r.device,
            "quoted comma-free text survives"
        );
        assert_eq!(cells[col("reached")], r.reached.to_string());
        let num = |c: &str| cells[col(c)].parse::<f64>().ok();
        assert_eq!(num("steps_to_target"), r.target_step.map(|v| v as f64));
        assert_eq!(num("train_time_to_target_ms"), r.target_train_time_ms);
        assert_eq!(num("final_val_loss"), r.final_val_loss);
        assert_eq!(num("step_avg_ms"), r.step_avg_ms);
        assert_eq!(num("tok_per_s"), r.tok_per_s);
        assert_eq!(num("target"), Some(3.3));
    }

    let json: serde_json::Value =
        serde_json::from_str(&render(&runs, &opts(Format::Json))).unwrap();
    assert_eq!(json["target"], 3.3);
    let jr = json["runs"].as_array().unwrap();
    assert_eq!(jr.len(), rows.len());
    for (j, r) in jr.iter().zip(&rows) {
        assert_eq!(j["name"], r.name.as_str());
        assert_eq!(j["target_step"].as_u64(), r.target_step);
        assert_eq!(j["final_val_loss"].as_f64(), r.final_val_loss);
        assert_eq!(j["reached"], r.reached);
    }
    assert_eq!(json["groups"].as_array().unwrap().len(), 3);
    // Only muon (n=3) and adamw (n=2) have the two values a Welch test needs; neon_live has one.
    assert_eq!(json["comparisons"].as_array().unwrap().len(), 1);

    let md = render(&runs, &opts(Format::Markdown));
    let table: Vec<&str> = md
        .lines()
        .skip_while(|l| !l.starts_with("| run |"))
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert_eq!(table.len(), rows.len() + 2);
    for (l, r) in table[2..].iter().zip(&rows) {
        let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 12, "{l}");
        assert_eq!(cells[0], r.name);
        let want = r
            .target_step
            .map_or("not reached".to_string(), |s| s.to_string());
        assert_eq!(cells[4], want);
    }
    assert!(md.contains("## Statistics over seeds"));
}

#[test]
fn cli_expands_globs_and_directories_of_runs() {
    let root = fixtures();
    let glob = format!("{}/muon_*", root.display());
    let dirs = expand_run_dirs(&[glob]).unwrap();
    let names: Vec<_> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["muon_s0", "muon_s1", "muon_s2"]);
    let all = expand_run_dirs(&[root.display().to_string()]).unwrap();
    assert_eq!(all.len(), 6);
    // Duplicates (a run named directly and via its parent) are kept once, first position.
    let both = expand_run_dirs(&[
        root.join("neon_live").display().to_string(),
        root.display().to_string(),
    ])
    .unwrap();
    assert_eq!((both.len(), both[0].ends_with("neon_live")), (6, true));
    let e = format!(
        "{:#}",
        expand_run_dirs(&["/nonexistent/run".into()]).unwrap_err()
    );
    assert!(e.contains("/nonexistent/run: no such run directory"), "{e}");
    let e = format!(
        "{:#}",
        expand_run_dirs(&[format!("{}/zz*", root.display())]).unwrap_err()
    );
    assert!(e.contains("matched no run directory or log"), "{e}");
    let md = compare(&all_fixture_dirs(), &CompareOpts::default()).unwrap();
    assert!(md.starts_with("Target val loss: 3.28"), "{md}");
}
#[test]
fn cli_run_writes_plot_and_html() {
    use clap::Parser;
    #[derive(Parser)]
    struct W {
        #[command(flatten)]
        a: cli::CompareArgs,
    }
    let dir = tempfile::tempdir().unwrap();
    let (png, html) = (dir.path().join("out.png"), dir.path().join("r.html"));
    let glob = format!("{}/*_s*", fixtures().display());
    let w = W::try_parse_from([
        "speedrun",
        &glob,
        "--target",
        "3.4",
        "--format",
        "json",
        "--plot",
        png.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--x",
        "tokens",
    ])
    .unwrap();
    cli::run(w.a).unwrap();
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Target val loss: 3.4") && page.contains("\"x\":\"tokens\""));
    assert!(!page.contains("neon_live"), "glob *_s* excludes neon_live");
}

#[test]
fn compare_args_parse_from_the_command_line() {
    use clap::Parser;
    #[derive(Parser)]
    struct W {
        #[command(flatten)]
        a: cli::CompareArgs,
    }
    let w = W::try_parse_from(["speedrun", "runs/a", "runs/b*", "--target", "3.3"]).unwrap();
    assert_eq!(w.a.runs, ["runs/a", "runs/b*"]);
    assert_eq!((w.a.target, w.a.format), (Some(3.3), Format::Markdown));
    let w = W::try_parse_from([
        "speedrun", "r", "--format", "csv", "--plot", "p.png", "--html", "x.html",
    ])
    .unwrap();
    assert_eq!(w.a.format, Format::Csv);
    assert_eq!(w.a.plot.as_deref(), Some(Path::new("p.png")));
    assert_eq!(w.a.html.as_deref(), Some(Path::new("x.html")));
    assert_eq!(
        (w.a.x, w.a.log_y, w.a.smooth, w.a.watch),
        (XAxis::Step, false, 0.9, None)
    );
    let w = W::try_parse_from([
        "speedrun", "r", "--x", "time", "--log-y", "--smooth", "0", "--watch",
    ])
    .unwrap();
    assert_eq!(
        (w.a.x, w.a.log_y, w.a.smooth, w.a.watch),
        (XAxis::Time, true, 0.0, Some(10))
    );
    let w = W::try_parse_from(["speedrun", "r", "--watch", "3"]).unwrap();
    assert_eq!(w.a.watch, Some(3));
    assert!(
        W::try_parse_from(["speedrun"]).is_err(),
        "a run dir is required"
    );
    for bad in [
        &["--format", "xml"][..],
        &["--x", "epochs"],
        &["--smooth", "1"],
        &["--smooth", "-0.1"],
        &["--watch", "0"],
    ] {
        let mut args = vec!["speedrun", "r"];
        args.extend_from_slice(bad);
        assert!(W::try_parse_from(&args).is_err(), "{bad:?}");
    }
}
