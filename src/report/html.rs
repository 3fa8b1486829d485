//! `--html`: one self-contained page (inline SVG plot, run table, statistics; no external assets).
use super::load::RunRecord;
use super::plot::plot_svg_string;
use super::stats::{self, Welch};
use super::table::{common_target, header, human_cells, run_rows};
use anyhow::Result;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(out: &mut String, head: &[String], rows: &[Vec<String>]) {
    out.push_str("<table>\n<tr>");
    for h in head {
        write!(out, "<th>{}</th>", esc(h)).unwrap();
    }
    out.push_str("</tr>\n");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            write!(out, "<td>{}</td>", esc(c)).unwrap();
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn fmt_pm(m: Option<f64>, s: Option<f64>, prec: usize) -> String {
    match (m, s) {
        (Some(m), Some(s)) => format!("{m:.prec$} ± {s:.prec$}"),
        (Some(m), None) => format!("{m:.prec$}"),
        _ => "-".into(),
    }
}

fn fmt_p(w: &Option<Welch>) -> String {
    w.map(|w| format!("{:.4} (t={:.3}, df={:.2})", w.p, w.t, w.df))
        .unwrap_or_else(|| "-".into())
}

/// Render the whole report page. The plot is skipped (with a note) when no run has val records.
pub fn render_html(runs: &[RunRecord], target: Option<f64>) -> Result<String> {
    let rows = run_rows(runs, target);
    let groups = stats::group_stats(runs, &rows);
    let cmps = stats::compare_groups(&groups);
    let tgt = target.or(common_target(&rows));
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>speedrun compare</title>\n<style>\
         body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}\
         td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}th{background:#eee}\
         td:first-child,th:first-child{text-align:left}svg{max-width:100%;height:auto}\
         </style></head><body>\n<h1>speedrun compare</h1>\n",
    );
    match tgt {
        Some(t) => writeln!(out, "<p>Target val loss: {t}</p>").unwrap(),
        None => out.push_str("<p>Target val loss: per run</p>\n"),
    }
    if runs.iter().any(|r| !r.val.is_empty()) {
        out.push_str(&plot_svg_string(runs, tgt)?);
        out.push('\n');
    } else {
        out.push_str("<p>(no val records yet: no plot)</p>\n");
    }
    out.push_str("<h2>Runs</h2>\n");
    let head: Vec<String> = header().iter().map(|s| s.to_string()).collect();
    let cells: Vec<Vec<String>> = rows.iter().map(human_cells).collect();
    table(&mut out, &head, &cells);
    out.push_str("<h2>Statistics over seeds</h2>\n");
    let head: Vec<String> = [
        "group",
        "optimizer",
        "n",
        "final val loss (mean ± std)",
        "Track-3 (target−mean)·√n ≥ 0.004",
        "steps to target (mean ± std)",
        "reached",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cells: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.label.clone(),
                g.optim.clone(),
                g.n_label(),
                fmt_pm(g.final_loss_mean, g.final_loss_std, 4),
                match (g.track3_margin, g.track3_pass) {
                    (Some(m), Some(p)) => format!("{} ({m:.4})", if p { "pass" } else { "fail" }),
                    _ => "-".into(),
                },
                fmt_pm(g.steps_mean, g.steps_std, 1),
                format!("{}/{}", g.reached, g.n),
            ]
        })
        .collect();
    table(&mut out, &head, &cells);
    if !cmps.is_empty() {
        out.push_str("<h2>Welch's t-test (two-sided p)</h2>\n");
        let head: Vec<String> = ["a", "b", "final val loss p", "steps to target p"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cells: Vec<Vec<String>> = cmps
            .iter()
            .map(|c| {
                vec![
                    c.a.clone(),
                    c.b.clone(),
                    fmt_p(&c.final_loss),
                    fmt_p(&c.steps_to_target),
                ]
            })
            .collect();
        table(&mut out, &head, &cells);
    }
    out.push_str("</body></html>\n");
    Ok(out)
}
