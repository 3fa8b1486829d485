//! The curves behind the charts (smoothing, seed means, colours) and the static plots.
use super::*;
use crate::report::stats::ema_debiased;

#[test]
fn ema_matches_tensorboards_smoothing() {
    // scripts/golden_report.py (TensorBoard's debiased EMA in numpy):
    //   ema w=0.9 of [10.9, 8.7, 7.8, nan, 7.5, 7.3, 7.4, 7.1]
    //      10.9, 9.742105263157894, 9.025461254612548, nan, 8.581884268682755,
    //      8.268855461405094, 8.083424072528752, 7.894921440949844
    //   ema w=0.5 of [4, 2]: [4.0, 2.6666666666666665]
    let ys = [10.9, 8.7, 7.8, f64::NAN, 7.5, 7.3, 7.4, 7.1];
    let want = [
        10.9,
        9.742105263157894,
        9.025461254612548,
        f64::NAN,
        8.581884268682755,
        8.268855461405094,
        8.083424072528752,
        7.894921440949844,
    ];
    for (g, w) in ema_debiased(&ys, 0.9).iter().zip(want) {
        assert!(
            (g.is_nan() && w.is_nan()) || close(*g, w, 1e-14),
            "{g} vs {w}"
        );
    }
    assert_eq!(ema_debiased(&[4.0, 2.0], 0.5), [4.0, 2.6666666666666665]);
    assert_eq!(
        ema_debiased(&[4.0, 2.0], 0.0),
        [4.0, 2.0],
        "weight 0: no smoothing"
    );
}

#[test]
fn seed_groups_are_means_with_sd_bands() {
    let runs = all_fixtures();
    let cmp = Comparison::new(&runs, None);
    let e = cmp.entries(0.9);
    assert_eq!(e.runs.len(), 6);
    // muon_s0..2 and adamw_s0..1 are groups; neon_live is alone.
    assert_eq!(e.groups.len(), 2);
    let muon = &e.groups[0];
    assert_eq!(muon.runs, [0, 1, 2]);
    assert_eq!(muon.label, "muon (n=3, mean ± sd)");
    // Step 150: val 3.27, 3.30, 3.25 (tests/fixtures/runs/README.md).
    let p = muon.val.iter().find(|p| p.step == 150).unwrap();
    let mean = (3.27 + 3.30 + 3.25) / 3.0;
    let sd =
        (((3.27f64 - mean).powi(2) + (3.30 - mean).powi(2) + (3.25 - mean).powi(2)) / 2.0).sqrt();
    assert!(close(p.y, mean, 1e-12), "{}", p.y);
    let (lo, hi) = p.band.unwrap();
    assert!(close(lo, mean - sd, 1e-12) && close(hi, mean + sd, 1e-12));
    assert_eq!(p.tokens, Some(150.0 * 16384.0));
    // What a static plot draws: the two groups and neon_live.
    let shown: Vec<&str> = e.grouped().iter().map(|e| e.label.as_str()).collect();
    assert_eq!(
        shown,
        [
            "muon (n=3, mean ± sd)",
            "adamw (n=2, mean ± sd)",
            "neon_live"
        ]
    );
    // A seed that has logged nothing yet is drawn alone; the group is the mean of the others
    // (it used to empty the group's curve, and the finished seeds vanished from the plot).
    let mut runs = all_fixtures();
    runs[2].val.clear();
    runs[2].train.clear();
    let e = Comparison::new(&runs, None).entries(0.9);
    assert_eq!(e.groups[0].runs, [0, 1]);
    assert_eq!(e.groups[0].label, "muon (n=2, mean ± sd)");
    let p = e.groups[0].val.iter().find(|p| p.step == 150).unwrap();
    assert!(close(p.y, (3.27 + 3.30) / 2.0, 1e-12), "{}", p.y);
    let shown: Vec<&str> = e.grouped().iter().map(|e| e.label.as_str()).collect();
    assert!(shown.contains(&"muon_s2"), "{shown:?}");
    // With one seed left with data there is no group: each run is drawn alone.
    runs[1].val.clear();
    runs[1].train.clear();
    let e = Comparison::new(&runs, None).entries(0.9);
    assert_eq!(e.groups.len(), 1, "only adamw is still a group");
    // A live group member that is behind limits the mean to the steps all seeds have.
    let c1 = vec![pt(0, 1.0), pt(10, 2.0), pt(20, 3.0)];
    let c2 = vec![pt(0, 3.0), pt(10, 4.0)];
    let m = crate::report::series::mean_curve(&[&c1, &c2]);
    assert_eq!(
        m.iter().map(|p| (p.step, p.y)).collect::<Vec<_>>(),
        [(0, 2.0), (10, 3.0)]
    );
}

fn pt(step: u64, y: f64) -> crate::report::series::Pt {
    crate::report::series::Pt {
        step,
        tokens: None,
        time_ms: step as f64,
        y,
        band: None,
    }
}

#[test]
fn colours_follow_the_optimizer_and_stay_distinct() {
    let runs = all_fixtures();
    let all = Comparison::new(&runs, None).entries(0.9);
    // Alone, muon is still blue and adamw still orange: the hue is the optimizer's.
    let only_muon = Comparison::new(&runs[..3], None).entries(0.9);
    let hue = |c: crate::report::palette::Rgb| {
        let (r, g, b) = (c.0 as i32, c.1 as i32, c.2 as i32);
        if b > r && b > g {
            "blue"
        } else if r > b && g > b && r > g {
            "orange"
        } else {
            "other"
        }
    };
    assert_eq!(hue(all.groups[0].color), "blue");
    assert_eq!(hue(only_muon.groups[0].color), "blue");
    assert_eq!(hue(all.groups[1].color), "orange");
    for r in &all.runs[..3] {
        assert_eq!(hue(r.color), "blue", "{}", r.label);
    }
    let mut colours: Vec<_> = all.runs.iter().map(|r| r.color).collect();
    colours.sort_by_key(|c| (c.0, c.1, c.2));
    colours.dedup();
    assert_eq!(colours.len(), 6, "every run its own shade");
}

/// The text of a `<text …>…</text>` element, given from just after its `<text`.
fn text_of(t: &str) -> String {
    let inner = t.split_once('>').unwrap().1;
    inner.split("</text>").next().unwrap().trim().to_string()
}

/// The number in the first `name="…"` attribute of `s`.
fn attr(s: &str, name: &str) -> f64 {
    let v = s.split(&format!("{name}=\"")).nth(1).unwrap();
    v.split('"').next().unwrap().parse().unwrap()
}

/// The `<text>` elements of an SVG.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text").skip(1).map(text_of).collect()
}

#[test]
fn plot_shows_every_point_ticks_legend_outside_and_target() {
    let runs = all_fixtures();
    let cmp = Comparison::new(&runs, Some(3.28));
    let svg = cmp.plot_svg(&plot::PlotOpts::default()).unwrap();
    let texts = svg_texts(&svg);
    for label in [
        "muon (n=3, mean ± sd)",
        "adamw (n=2, mean ± sd)",
        "neon_live",
        "target 3.28",
    ] {
        assert!(
            texts.iter().any(|t| t == label),
            "legend lacks {label}: {texts:?}"
        );
    }
    assert!(
        texts.iter().any(|t| t == "val loss")
            && texts
                .iter()
                .any(|t| t
                    .starts_with("train loss: mean over all micro-batches of the step (EMA 0.9"))
    );
    // The y axis reaches step 0's 10.83: a tick at 10 or above.
    let y_max = texts
        .iter()
        .filter_map(|t| t.parse::<f64>().ok())
        .filter(|v| *v < 20.0)
        .fold(0.0, f64::max);
    assert!(y_max >= 10.0, "y ticks stop at {y_max}");
    // The legend sits right of both panels.
    let legend = svg.split("<text").find(|t| text_of(t) == "neon_live");
    let legend_x = attr(legend.unwrap(), "x");
    assert!(legend_x > 1240.0, "legend at x = {legend_x}");
    // Tokens and time axes: labelled in their units, ticks distinct.
    for (x, title) in [
        (XAxis::Tokens, "tokens (millions)"),
        (XAxis::Time, "train time (s)"),
    ] {
        let svg = cmp
            .plot_svg(&plot::PlotOpts {
                x,
                ..Default::default()
            })
            .unwrap();
        let t = svg_texts(&svg);
        assert!(t.iter().any(|s| s == title), "{title}: {t:?}");
    }
    let log = cmp
        .plot_svg(&plot::PlotOpts {
            log_y: true,
            ..Default::default()
        })
        .unwrap();
    assert!(svg_texts(&log).iter().any(|t| t == "val loss (log scale)"));
}

#[test]
fn short_run_ticks_read_apart() {
    // A 5-step run with a 0.3 s clock: the defects were "0 0 1 2 2 3 4 4 5" and an all-"0"
    // time axis.
    let dir = tempfile::tempdir().unwrap();
    let mut log = String::new();
    for s in 0..=5u64 {
        let ms = s as f64 * 60.0;
        log += &format!("{{\"kind\":\"val\",\"step\":{s},\"val_loss\":{},\"tokens\":{},\"train_time_ms\":{ms}}}\n", 10.0 - s as f64, s * 64);
    }
    std::fs::write(dir.path().join("log.jsonl"), log).unwrap();
    let runs = [load_run(dir.path()).unwrap()];
    let cmp = Comparison::new(&runs, None);
    for x in XAxis::ALL {
        let svg = cmp
            .plot_svg(&plot::PlotOpts {
                x,
                ..Default::default()
            })
            .unwrap();
        // The x tick labels: the centred numbers of the val panel (x < 620, its width).
        let half: Vec<String> = svg
            .split("<text")
            .filter(|t| t.contains("text-anchor=\"middle\""))
            .filter(|t| attr(t, "x") < 620.0)
            .map(text_of)
            .filter(|t| t.parse::<f64>().is_ok())
            .collect();
        let half = &half[..];
        let mut d = half.to_vec();
        d.dedup();
        assert_eq!(d, half, "{x:?}: repeated tick labels {half:?}");
        assert!(half.len() >= 3, "{x:?}: {half:?}");
        assert!(
            half.iter().any(|t| t.parse::<f64>().unwrap() > 0.0),
            "{x:?}: {half:?}"
        );
    }
}

#[test]
fn png_is_the_svg_rasterised_at_twice_its_size() {
    let runs = all_fixtures();
    let cmp = Comparison::new(&runs, Some(3.28));
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("p.PNG");
    cmp.plot(&png, &plot::PlotOpts::default()).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    let svg = cmp.plot_svg(&plot::PlotOpts::default()).unwrap();
    let dim = |k: &str| attr(&svg, k) as u32;
    // IHDR: width and height as big-endian u32 at bytes 16..24.
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((w, h), (2 * dim("width"), 2 * dim("height")));
    let e = format!(
        "{:#}",
        cmp.plot(&dir.path().join("p.jpg"), &Default::default())
            .unwrap_err()
    );
    assert!(e.contains("p.jpg: unsupported plot format"), "{e}");
    let e = format!(
        "{:#}",
        cmp.plot(&dir.path().join("no/such/p.png"), &Default::default())
            .unwrap_err()
    );
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn diagnostics_add_median_panels_only_when_logged() {
    let title = "gradient nuc_fro_ratio, median over matrices";
    let runs = all_fixtures();
    let plain = Comparison::new(&runs, Some(3.28))
        .plot_svg(&Default::default())
        .unwrap();
    assert!(!svg_texts(&plain).iter().any(|t| t == title));

    let dir = tempfile::tempdir().unwrap();
    let mut log = String::new();
    for step in 1..=4u32 {
        log += &format!(
            r#"{{"kind":"train","step":{step},"loss":9.0,"tokens":{},"step_ms":5.0,"train_time_ms":{}}}"#,
            64 * step,
            10 * step
        );
        log += "\n";
        if step % 2 == 0 {
            let layer = |r: f64| {
                format!(
                    r#"{{"grad_fro":1,"grad_nuc":2,"grad_spec":1,"stable_rank":{},"nuc_fro_ratio":{r}}}"#,
                    r / 4.0
                )
            };
            let ratio = 100.0 * f64::from(step);
            log += &format!(
                r#"{{"kind":"diag","step":{step},"layers":{{"a":{},"b":{}}}}}"#,
                layer(ratio - 50.0),
                layer(ratio + 50.0)
            );
            log += "\n";
        }
    }
    std::fs::write(dir.path().join("log.jsonl"), log).unwrap();
    let mut runs = all_fixtures();
    runs.push(crate::report::load::load_run(dir.path()).unwrap());
    let cmp = Comparison::new(&runs, Some(3.28));
    let entries = cmp.entries(0.9);
    let e = entries.runs.last().unwrap();
    // Medians (200, 400) and (50, 100), at the train records' tokens and times.
    let ys: Vec<(u64, f64, Option<f64>)> =
        e.diag[0].iter().map(|p| (p.step, p.y, p.tokens)).collect();
    assert_eq!(ys, vec![(2, 200.0, Some(128.0)), (4, 400.0, Some(256.0))]);
    assert_eq!(e.diag[1][1].y, 100.0);
    assert_eq!(e.diag[1][1].time_ms, 40.0);
    for x in XAxis::ALL {
        let svg = cmp
            .plot_svg(&plot::PlotOpts {
                x,
                ..Default::default()
            })
            .unwrap();
        let texts = svg_texts(&svg);
        assert!(texts.iter().any(|t| t == title), "{x:?}: {texts:?}");
        assert!(texts
            .iter()
            .any(|t| t == "gradient stable_rank, median over matrices"));
        // Two rows of panels: twice the height of the plain plot.
        assert_eq!(attr(&svg, "height"), 2.0 * attr(&plain, "height"));
        // The ratio's axis reaches its 400.
        assert!(texts.iter().any(|t| t == "400"), "{texts:?}");
    }
}
