//! `--html`: one self-contained page that works offline. The charts are drawn in the browser by
//! uPlot (assets/uplot/, embedded with its license) from the comparison's curves, embedded as
//! JSON; assets/report.js adds the legend toggles, the x-axis switch, log-y, the hover read-out and
//! the sortable tables. Nothing is fetched: every byte the page needs is in the file.
use super::cells::{group_cells, pair_cells, run_cells, GROUP_HEADER, PAIR_HEADER, RUN_HEADER};
use super::comparison::Comparison;
use super::series::{Curve, Entry, XAxis};
use crate::train::log::Sample;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

const UPLOT_JS: &str = include_str!("../../assets/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/uplot/uPlot.min.css");
const REPORT_JS: &str = include_str!("../../assets/report.js");
pub(super) const REPORT_CSS: &str = include_str!("../../assets/report.css");

/// How to build the page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HtmlOpts {
    /// EMA weight of the smoothed train loss.
    pub smooth: f64,
    /// The x axis and y scale the page opens with (`--x`, `--log-y`).
    pub x: XAxis,
    pub log_y: bool,
    /// Reload every this many seconds (`compare --watch`).
    pub refresh: Option<u64>,
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) fn table(
    out: &mut String,
    id: &str,
    head: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) {
    writeln!(out, "<table class=\"sortable\" id=\"{id}\">\n<thead><tr>").unwrap();
    for h in head {
        write!(out, "<th>{}</th>", esc(h)).unwrap();
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            write!(out, "<td>{}</td>", esc(&c)).unwrap();
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

/// JSON text made safe inside a `<script>` element: every `<` as `\u003c`. Within a script,
/// `</script` ends the element and `<!--` followed by `<script` makes the parser wait for a
/// second `</script>` (the HTML spec's "script data escaped" states), so a run named
/// `<!--<script` would swallow the page's code. JSON reads `\u003c` back as `<`.
fn script_json(json: &str) -> String {
    json.replace('<', "\\u003c")
}

/// `x` rounded to `d` decimals: the page carries what a reader can see, not 17 digits.
fn round(x: f64, d: i32) -> f64 {
    let m = 10f64.powi(d);
    (x * m).round() / m
}

/// A curve as parallel arrays: steps, tokens, train time (ms), value, and a group's band.
#[derive(Serialize)]
struct CurveJson {
    s: Vec<u64>,
    /// Tokens: whole numbers (the seeds of a group share them).
    t: Vec<Option<u64>>,
    ms: Vec<f64>,
    y: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lo: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hi: Option<Vec<f64>>,
}

impl From<&Curve> for CurveJson {
    fn from(c: &Curve) -> Self {
        let band = |f: fn((f64, f64)) -> f64| -> Option<Vec<f64>> {
            c.iter().map(|p| p.band.map(|b| round(f(b), 5))).collect()
        };
        CurveJson {
            s: c.iter().map(|p| p.step).collect(),
            t: c.iter()
                .map(|p| p.tokens.map(|t| t.round() as u64))
                .collect(),
            ms: c.iter().map(|p| round(p.time_ms, 1)).collect(),
            y: c.iter().map(|p| round(p.y, 5)).collect(),
            lo: band(|b| b.0).filter(|v| !v.is_empty()),
            hi: band(|b| b.1).filter(|v| !v.is_empty()),
        }
    }
}

#[derive(Serialize)]
struct EntryJson {
    label: String,
    color: String,
    /// Indices of the runs (a group's seeds).
    runs: Vec<usize>,
    val: CurveJson,
    train: CurveJson,
    ema: CurveJson,
}

impl From<&Entry> for EntryJson {
    fn from(e: &Entry) -> Self {
        EntryJson {
            label: e.label.clone(),
            color: e.color.hex(),
            runs: e.runs.clone(),
            val: (&e.val).into(),
            train: (&e.train).into(),
            ema: (&e.train_ema).into(),
        }
    }
}

#[derive(Serialize)]
struct ScalarJson {
    s: Vec<u64>,
    y: Vec<f64>,
}

/// A `sample` record as the page shows it: step, prompt, continuation.
#[derive(Serialize)]
struct SampleJson<'a> {
    s: usize,
    p: &'a str,
    x: &'a str,
}

impl<'a> From<&'a Sample> for SampleJson<'a> {
    fn from(x: &'a Sample) -> Self {
        SampleJson {
            s: x.step,
            p: &x.prompt,
            x: &x.text,
        }
    }
}

#[derive(Serialize)]
struct PageData<'a> {
    target: Option<f64>,
    smooth: f64,
    /// Which train loss the train chart draws ([`super::series::TrainBasis::describe`]).
    #[serde(rename = "trainBasis")]
    train_basis: &'static str,
    x: &'static str,
    #[serde(rename = "logY")]
    log_y: bool,
    refresh: Option<u64>,
    runs: Vec<EntryJson>,
    groups: Vec<EntryJson>,
    /// Per tag, per run: the other scalars of the logs (learning rates, diagnostics, times).
    scalars: BTreeMap<String, Vec<Option<ScalarJson>>>,
    /// Per run: what its weights wrote at their step.
    samples: Vec<Vec<SampleJson<'a>>>,
}

impl Comparison<'_> {
    fn page_data(&self, opts: &HtmlOpts) -> PageData<'_> {
        let entries = self.entries(opts.smooth);
        let mut scalars: BTreeMap<String, Vec<Option<ScalarJson>>> = BTreeMap::new();
        for (i, run) in self.runs.iter().enumerate() {
            for (tag, pts) in run.all_scalars() {
                if tag.starts_with("loss/") {
                    continue;
                }
                let finite: Vec<&(u64, f64)> = pts.iter().filter(|p| p.1.is_finite()).collect();
                let per_run = scalars
                    .entry(tag)
                    .or_insert_with(|| (0..self.runs.len()).map(|_| None).collect());
                per_run[i] = Some(ScalarJson {
                    s: finite.iter().map(|p| p.0).collect(),
                    y: finite.iter().map(|p| p.1).collect(),
                });
            }
        }
        PageData {
            target: self.target,
            smooth: opts.smooth,
            train_basis: entries.train_basis.describe(),
            x: opts.x.name(),
            log_y: opts.log_y,
            refresh: opts.refresh,
            runs: entries.runs.iter().map(EntryJson::from).collect(),
            groups: entries.groups.iter().map(EntryJson::from).collect(),
            scalars,
            samples: self
                .runs
                .iter()
                .map(|r| r.samples.iter().map(SampleJson::from).collect())
                .collect(),
        }
    }

    /// The whole report page.
    pub fn html(&self, opts: &HtmlOpts) -> Result<String> {
        let mut out = String::with_capacity(UPLOT_JS.len() + 64 * 1024);
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
        out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        out.push_str("<title>speedrun compare</title>\n<style>\n");
        out.push_str(UPLOT_CSS);
        out.push('\n');
        out.push_str(REPORT_CSS);
        out.push_str("</style></head><body>\n<h1>speedrun compare</h1>\n<div id=\"meta\">");
        match self.target {
            Some(t) => write!(out, "Target val loss: {t}").unwrap(),
            None => out.push_str("Target val loss: per run"),
        }
        write!(out, " · {} runs", self.runs.len()).unwrap();
        if let Some(s) = opts.refresh {
            write!(
                out,
                " · live: reloads every {s} s <label><input type=\"checkbox\" id=\"pause\"> pause</label>"
            )
            .unwrap();
        }
        out.push_str("</div>\n");
        out.push_str(CONTROLS);
        out.push_str("<h2>Runs</h2>\n<div class=\"tables\"><section>\n");
        table(
            &mut out,
            "runs",
            &RUN_HEADER,
            self.rows.iter().map(run_cells),
        );
        out.push_str("</section><section>\n<h2>Statistics over seeds</h2>\n");
        table(
            &mut out,
            "groups",
            &GROUP_HEADER,
            self.groups.iter().map(group_cells),
        );
        if !self.tests.is_empty() {
            out.push_str("<h2>Welch's t-test (two-sided p)</h2>\n");
            let rows = self.tests.iter().map(|c| pair_cells(c, "-"));
            table(&mut out, "tests", &PAIR_HEADER, rows);
        }
        out.push_str("</section></div>\n<div id=\"tip\"></div>\n");
        let data = script_json(&serde_json::to_string(&self.page_data(opts))?);
        writeln!(
            out,
            "<script type=\"application/json\" id=\"report-data\">{data}</script>"
        )
        .unwrap();
        write!(
            out,
            "<script>\n{UPLOT_JS}\n</script>\n<script>\n{REPORT_JS}</script>\n"
        )
        .unwrap();
        out.push_str("</body></html>\n");
        Ok(out)
    }
}

const CONTROLS: &str = r#"<div class="controls">
<fieldset><legend>x axis</legend>
<label><input type="radio" name="x" value="step" checked> step</label>
<label><input type="radio" name="x" value="tokens"> tokens</label>
<label><input type="radio" name="x" value="time"> train time</label></fieldset>
<label><input type="checkbox" id="log-y"> log y</label>
<label><input type="checkbox" id="grouped" checked> seeds as mean ± sd</label>
</div>
<noscript><p>The charts need JavaScript; the tables below do not.</p></noscript>
<div class="main"><div class="charts">
<div class="chart"><div class="chart-title">val loss</div><div id="chart-val"></div></div>
<div class="chart" id="samples-box" hidden><div class="chart-title">what the weights wrote (greedy samples at validations; hover a chart to follow the steps)</div><div id="samples"></div></div>
<div class="chart"><div class="chart-title" id="train-title">train loss</div><div id="chart-train"></div></div>
<div class="chart"><div class="chart-title">other scalars: <select id="scalar"></select></div><div id="chart-scalar"></div></div>
</div><div class="legend" id="legend"></div></div>
"#;
