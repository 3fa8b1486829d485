//! `--html`: one self-contained page (inline SVG plot, run table, statistics; no external assets).
use super::cells::{group_cells, pair_cells, run_cells, GROUP_HEADER, PAIR_HEADER, RUN_HEADER};
use super::comparison::Comparison;
use super::plot::plot_svg_string;
use anyhow::Result;
use std::fmt::Write;

const HEAD: &str =
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>speedrun compare</title>\n<style>\
     body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}\
     td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}th{background:#eee}\
     td:first-child,th:first-child{text-align:left}svg{max-width:100%;height:auto}\
     </style></head><body>\n<h1>speedrun compare</h1>\n";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(out: &mut String, head: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    out.push_str("<table>\n<tr>");
    for h in head {
        write!(out, "<th>{}</th>", esc(h)).unwrap();
    }
    out.push_str("</tr>\n");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            write!(out, "<td>{}</td>", esc(&c)).unwrap();
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

impl Comparison<'_> {
    /// The whole report page. The plot is skipped (with a note) when no run has val records.
    pub fn html(&self) -> Result<String> {
        let mut out = String::from(HEAD);
        match self.target {
            Some(t) => writeln!(out, "<p>Target val loss: {t}</p>").unwrap(),
            None => out.push_str("<p>Target val loss: per run</p>\n"),
        }
        if self.runs.iter().any(|r| !r.val.is_empty()) {
            out.push_str(&plot_svg_string(self.runs, self.target)?);
            out.push('\n');
        } else {
            out.push_str("<p>(no val records yet: no plot)</p>\n");
        }
        out.push_str("<h2>Runs</h2>\n");
        table(&mut out, &RUN_HEADER, self.rows.iter().map(run_cells));
        out.push_str("<h2>Statistics over seeds</h2>\n");
        table(&mut out, &GROUP_HEADER, self.groups.iter().map(group_cells));
        if !self.tests.is_empty() {
            out.push_str("<h2>Welch's t-test (two-sided p)</h2>\n");
            table(
                &mut out,
                &PAIR_HEADER,
                self.tests.iter().map(|c| pair_cells(c, "-")),
            );
        }
        out.push_str("</body></html>\n");
        Ok(out)
    }
}
