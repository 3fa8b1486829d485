//! The race report as files: `report.md`, `report.html` (the same tables, the plots inline),
//! `race.png`, `tuning.png` and `runs.html` (every run of the race in the interactive page).
use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{ContestantReport, PairVerdict, PointRow, RaceReport, Tuned};
use crate::report::cells::{group_cells, run_cells, GROUP_HEADER, RUN_HEADER};
use crate::report::html::{esc, table, HtmlOpts, REPORT_CSS};
use crate::report::plot::tuning::{tuning_svg, TuningCurve};
use crate::report::plot::{write_plot, PlotOpts, DEFAULT_SMOOTH};
use crate::report::table::{md_escape, md_table};
use crate::report::{Comparison, XAxis};
use crate::train::race::Plan;

const TUNING_HEADER: [&str; 6] = [
    "contestant",
    "point",
    "run",
    "steps to target",
    "final val loss",
    "chosen",
];
const BUDGET_HEADER: [&str; 5] = [
    "contestant",
    "first grid",
    "points run",
    "extensions",
    "optimum",
];
/// What the two tests of a pair assume, printed beside them.
const TESTS_NOTE: &str = "Welch's t-test (two-sided) uses the spread of these seeds' final val \
losses. Track 3's pairwise rule assumes the spread of its own 124M benchmark (σ = 0.0013 a run) \
and prices 100 steps at 0.0045 val loss: at another scale it is a convention, not a test.";

const PAIR_HEADER: [&str; 7] = [
    "contestant",
    "vs",
    "seeds first (best / other / same step / neither)",
    "final val loss (mean)",
    "Welch p, final loss",
    "Welch p, steps to target",
    "Track-3 pairwise margin (≥ 0.004)",
];

fn point_text(c: &ContestantReport, p: &PointRow) -> String {
    c.keys
        .iter()
        .zip(p.values.iter().zip(&p.times))
        .map(|(k, (v, t))| {
            let times = t.as_ref().map_or(String::new(), |t| format!(" ({t})"));
            format!("{k}={v}{times}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn tuning_rows(r: &RaceReport) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for c in r.contestants.iter().filter(|c| !c.keys.is_empty()) {
        for p in &c.points {
            let steps = match (p.diverged_at, p.target_step) {
                (Some(d), _) => format!("diverged @{d}"),
                (None, Some(s)) => s.to_string(),
                (None, None) => "not reached".into(),
            };
            rows.push(vec![
                c.label.clone(),
                point_text(c, p),
                p.run.clone(),
                steps,
                p.final_val_loss
                    .filter(|l| l.is_finite())
                    .map_or("-".into(), |l| format!("{l:.4}")),
                if p.chosen {
                    "best".into()
                } else {
                    String::new()
                },
            ]);
        }
    }
    rows
}

fn optimum(c: &ContestantReport) -> String {
    let best = c.best.clone().unwrap_or_default();
    match c.tuned {
        Tuned::Bracketed => format!("bracketed: {best}"),
        Tuned::Untuned => format!("untuned: {best}; {}", c.note),
        Tuned::Pending => format!("pending ({})", c.note),
        Tuned::AsGiven => "as given".into(),
    }
}

fn budget_rows(r: &RaceReport) -> Vec<Vec<String>> {
    r.contestants
        .iter()
        .filter(|c| !c.keys.is_empty())
        .map(|c| {
            vec![
                c.label.clone(),
                format!("{} point(s) of {}", c.grid_size, c.keys.join(" × ")),
                c.points.len().to_string(),
                format!("{} of {}", c.extensions, r.extend),
                optimum(c),
            ]
        })
        .collect()
}

fn pair_rows(r: &RaceReport) -> Vec<Vec<String>> {
    let mean = |label: &str| {
        r.contestants
            .iter()
            .find(|c| c.label == label)
            .and_then(|c| c.group.as_ref()?.final_loss_mean)
            .map_or("-".into(), |m| format!("{m:.4}"))
    };
    let p = |w: Option<crate::report::stats::Welch>| {
        w.map_or("-".into(), |w| {
            format!("{:.4} (t={:.3}, df={:.2})", w.p, w.t, w.df)
        })
    };
    r.pairs
        .iter()
        .map(|v: &PairVerdict| {
            vec![
                v.other.clone(),
                v.best.clone(),
                format!(
                    "{} / {} / {} / {} of {}",
                    v.best_first, v.other_first, v.ties, v.neither, v.seeds
                ),
                format!("{} vs {}", mean(&v.other), mean(&v.best)),
                p(v.final_loss),
                p(v.steps_to_target),
                v.track3_pairwise.map_or("-".into(), |m| format!("{m:.4}")),
            ]
        })
        .collect()
}

fn intro(r: &RaceReport) -> Vec<String> {
    let mut lines = vec![format!(
        "Preset {}, target val loss {}; {} seed(s) at each contestant's best point, every run of a seed from the same initial weights (`init_s<seed>.safetensors`).",
        r.preset,
        r.target.map_or("per run".into(), |t| t.to_string()),
        r.seeds
    )];
    if !r.tune.is_empty() {
        lines.push(format!(
            "Tuning on seed 0: {} for every contestant (`x`: times its own preset value), and each grid grows by one point at the edge where its best point lies, at most {} time(s). Rule: {}.",
            r.tune.iter().map(|t| format!("`--tune {t}`")).collect::<Vec<_>>().join(" and "),
            r.extend,
            r.rule
        ));
    }
    lines
}

fn markdown(r: &RaceReport, cmp: &Comparison, plots: &Plots) -> String {
    let mut out = format!("# Race report\n\n`{}`\n\n", r.command);
    for l in intro(r) {
        writeln!(out, "{l}\n").unwrap();
    }
    if !r.tune.is_empty() {
        out.push_str("## Tuning (seed 0)\n\n");
        md_table(&mut out, &BUDGET_HEADER, budget_rows(r));
        out.push('\n');
        md_table(&mut out, &TUNING_HEADER, tuning_rows(r));
        if plots.tuning {
            out.push_str("\n![final val loss against the tuned value](tuning.png)\n");
        }
        out.push('\n');
    }
    out.push_str("## The race: each contestant at its best point\n\n");
    let esc_row = |cells: Vec<String>| cells.iter().map(|c| md_escape(c)).collect();
    md_table(
        &mut out,
        &RUN_HEADER,
        cmp.rows.iter().map(|r| esc_row(run_cells(r))),
    );
    out.push_str("\nStatistics over seeds:\n\n");
    let groups = r.contestants.iter().filter_map(|c| c.group.as_ref());
    md_table(
        &mut out,
        &GROUP_HEADER,
        groups.map(|g| esc_row(group_cells(g))),
    );
    if plots.race {
        out.push_str("\n![val and train loss at each best point](race.png)\n");
    }
    if let Some(best) = &r.best {
        writeln!(
            out,
            "\n## Against the best contestant: {best}\n\nThe {}. {TESTS_NOTE}\n",
            r.best_rule
        )
        .unwrap();
        if !r.pairs.is_empty() {
            md_table(
                &mut out,
                &PAIR_HEADER,
                pair_rows(r).into_iter().map(esc_row),
            );
            out.push_str("\n## Verdict\n\n");
            for v in &r.pairs {
                writeln!(out, "- {}", v.sentence).unwrap();
            }
        }
    }
    out.push_str("\nEvery run of the race, interactive: [runs.html](runs.html).\n");
    out
}

/// Which plots were drawn.
struct Plots {
    tuning: bool,
    race: bool,
}

fn section(out: &mut String, title: &str) {
    writeln!(out, "<h2>{}</h2>", esc(title)).unwrap();
}

/// A table that scrolls sideways when it is wider than the page.
fn wide_table(
    out: &mut String,
    id: &str,
    head: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) {
    out.push_str("<div class=\"scroll\">\n");
    table(out, id, head, rows);
    out.push_str("</div>\n");
}

/// A paragraph of the markdown text: escaped, its `code` spans as <code>.
fn para(out: &mut String, text: &str) {
    let mut html = String::new();
    for (i, part) in esc(text).split('`').enumerate() {
        match i % 2 {
            1 => write!(html, "<code>{part}</code>").unwrap(),
            _ => html.push_str(part),
        }
    }
    writeln!(out, "<p>{html}</p>").unwrap();
}

fn html(r: &RaceReport, cmp: &Comparison, tuning: Option<&str>, race: Option<&str>) -> String {
    let mut out =
        String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    writeln!(out, "<title>speedrun race report</title>\n<style>\n{REPORT_CSS}\nsvg {{ max-width: 100%; height: auto; }}\n.scroll {{ overflow-x: auto; margin-bottom: .8em; }}\n</style></head><body>").unwrap();
    writeln!(
        out,
        "<h1>Race report</h1>\n<div id=\"meta\"><code>{}</code></div>",
        esc(&r.command)
    )
    .unwrap();
    for l in intro(r) {
        para(&mut out, &l);
    }
    if !r.tune.is_empty() {
        section(&mut out, "Tuning (seed 0)");
        wide_table(&mut out, "budget", &BUDGET_HEADER, budget_rows(r));
        wide_table(&mut out, "tuning", &TUNING_HEADER, tuning_rows(r));
        if let Some(svg) = tuning {
            writeln!(out, "<div class=\"chart\" id=\"tuning-plot\">{svg}</div>").unwrap();
        }
    }
    section(&mut out, "The race: each contestant at its best point");
    wide_table(
        &mut out,
        "runs",
        &RUN_HEADER,
        cmp.rows.iter().map(run_cells),
    );
    section(&mut out, "Statistics over seeds");
    let groups = r.contestants.iter().filter_map(|c| c.group.as_ref());
    wide_table(&mut out, "groups", &GROUP_HEADER, groups.map(group_cells));
    if let Some(svg) = race {
        writeln!(out, "<div class=\"chart\" id=\"race-plot\">{svg}</div>").unwrap();
    }
    if let Some(best) = &r.best {
        section(&mut out, &format!("Against the best contestant: {best}"));
        para(&mut out, &format!("The {}. {TESTS_NOTE}", r.best_rule));
        if !r.pairs.is_empty() {
            wide_table(&mut out, "pairs", &PAIR_HEADER, pair_rows(r));
            section(&mut out, "Verdict");
            out.push_str("<ul id=\"verdict\">\n");
            for v in &r.pairs {
                writeln!(out, "<li>{}</li>", esc(&v.sentence)).unwrap();
            }
            out.push_str("</ul>\n");
        }
    }
    out.push_str("<p>Every run of the race, interactive: <a href=\"runs.html\">runs.html</a>.</p>\n</body></html>\n");
    out
}

/// The tuning curves over the first tuned key: one per contestant (per combination of its other
/// keys when several are tuned).
fn curves(r: &RaceReport, key: &str) -> Vec<TuningCurve> {
    let mut out: Vec<TuningCurve> = Vec::new();
    for c in r
        .contestants
        .iter()
        .filter(|c| c.keys.first().map(String::as_str) == Some(key))
    {
        for p in &c.points {
            let rest: Vec<String> = c.keys[1..]
                .iter()
                .zip(&p.values[1..])
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let mut label = std::iter::once(c.label.clone())
                .chain(rest)
                .collect::<Vec<_>>()
                .join(" ");
            if c.tuned == Tuned::Untuned {
                label.push_str(" (untuned)");
            }
            let y = p.final_val_loss.filter(|_| p.diverged_at.is_none());
            let i = match out.iter().position(|k| k.label == label) {
                Some(i) => i,
                None => {
                    out.push(TuningCurve {
                        label,
                        optim: c.optim.clone(),
                        points: Vec::new(),
                        chosen: None,
                    });
                    out.len() - 1
                }
            };
            out[i].points.push((p.values[0], y));
            if p.chosen {
                out[i].chosen = Some(p.values[0]);
            }
        }
    }
    out
}

/// Every run of the race so far: the grid points, then the seeds at the best points.
fn all_dirs(plan: &Plan, r: &RaceReport) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = r
        .contestants
        .iter()
        .flat_map(|c| c.points.iter().map(|p| plan.out.join(&p.run)))
        .collect();
    for c in &r.contestants {
        dirs.extend(
            c.final_dirs
                .iter()
                .filter(|d| !dirs.contains(d))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    dirs
}

/// Write every file of the report into the race directory; returns the markdown.
pub(super) fn write_all(
    plan: &Plan,
    r: &RaceReport,
    cmp: &Comparison,
    extra_plot: Option<&Path>,
) -> Result<String> {
    let out = &plan.out;
    let write =
        |name: &str, text: &str| crate::fsutil::write_atomic(&out.join(name), text.as_bytes());
    let race_svg = if cmp.runs.is_empty() {
        None
    } else {
        let svg = cmp.plot_svg(&PlotOpts::default())?;
        write_plot(&out.join("race.png"), || Ok(svg.clone()))?;
        if let Some(p) = extra_plot {
            cmp.plot(p, &PlotOpts::default())?;
        }
        Some(svg)
    };
    let tuning = match plan.tune.first() {
        Some(t) => {
            let svg = tuning_svg(&curves(r, &t.key), &t.key, r.target)?;
            write_plot(&out.join("tuning.png"), || Ok(svg.clone()))?;
            Some(svg)
        }
        None => None,
    };
    let all = crate::report::load_runs(&all_dirs(plan, r))?;
    let opts = HtmlOpts {
        smooth: DEFAULT_SMOOTH,
        x: XAxis::Step,
        log_y: false,
        refresh: None,
    };
    write("runs.html", &Comparison::new(&all, None).html(&opts)?)?;
    let plots = Plots {
        tuning: tuning.is_some(),
        race: race_svg.is_some(),
    };
    let md = markdown(r, cmp, &plots);
    write("report.md", &md)?;
    write(
        "report.html",
        &html(r, cmp, tuning.as_deref(), race_svg.as_deref()),
    )?;
    Ok(md)
}
