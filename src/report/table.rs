//! The comparison as text: a markdown report (run table and statistics over seeds), csv (the run
//! table, raw numbers) or json (rows, groups and tests).
use super::cells::{group_cells, pair_cells, run_cells, GROUP_HEADER, PAIR_HEADER, RUN_HEADER};
use super::comparison::Comparison;
use super::row::RunRow;
use super::seeds::{GroupStats, PairTest};
use serde::Serialize;
use std::fmt::Write;

/// Output format of the comparison table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Markdown,
    Csv,
    Json,
}

pub(crate) fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A markdown table; the cells are written as given (escaped by the caller).
pub(crate) fn md_table(
    out: &mut String,
    head: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) {
    writeln!(out, "| {} |", head.join(" | ")).unwrap();
    writeln!(out, "|{}", "---|".repeat(head.len())).unwrap();
    for cells in rows {
        writeln!(out, "| {} |", cells.join(" | ")).unwrap();
    }
}

/// Markdown section with the group table and the pairwise Welch tests.
fn markdown_stats(out: &mut String, groups: &[GroupStats], tests: &[PairTest]) {
    out.push_str("## Statistics over seeds\n\n");
    md_table(
        out,
        &GROUP_HEADER,
        groups.iter().map(|g| {
            let mut cells = group_cells(g);
            cells[0] = md_escape(&cells[0]);
            cells
        }),
    );
    if !tests.is_empty() {
        out.push_str("\nWelch's t-test (two-sided p):\n\n");
        md_table(
            out,
            &PAIR_HEADER,
            tests.iter().map(|c| {
                let mut cells = pair_cells(c, "- (needs ≥2 values per side)");
                cells[0] = md_escape(&cells[0]);
                cells[1] = md_escape(&cells[1]);
                cells
            }),
        );
    }
}

fn markdown(cmp: &Comparison) -> String {
    let mut out = String::new();
    match cmp.common_target() {
        Some(t) => writeln!(out, "Target val loss: {t}\n").unwrap(),
        None => writeln!(out, "Target val loss: per run (see json)\n").unwrap(),
    }
    md_table(
        &mut out,
        &RUN_HEADER,
        cmp.rows
            .iter()
            .map(|r| run_cells(r).iter().map(|c| md_escape(c)).collect()),
    );
    if !cmp.groups.is_empty() {
        out.push('\n');
        markdown_stats(&mut out, &cmp.groups, &cmp.tests);
    }
    out
}

/// Machine cells: raw numbers (ms, not s), empty when absent; `reached` says whether the
/// target columns are meaningful.
fn csv(rows: &[RunRow]) -> String {
    let mut out = String::from(
        "run,dir,optimizer,seed,hyperparameters,device,target,reached,steps_to_target,\
         tokens_to_target,train_time_to_target_ms,final_step,final_val_loss,step_avg_ms,\
         tok_per_s,finished,diverged_at,status\n",
    );
    fn o<T: ToString>(v: Option<T>) -> String {
        v.map(|v| v.to_string()).unwrap_or_default()
    }
    for r in rows {
        let cells = [
            csv_field(&r.name),
            csv_field(&r.dir),
            csv_field(&r.optim),
            o(r.seed),
            csv_field(&r.hparams),
            csv_field(&r.device),
            o(r.target),
            r.reached.to_string(),
            o(r.target_step),
            o(r.target_tokens),
            o(r.target_train_time_ms),
            o(r.final_step),
            o(r.final_val_loss),
            o(r.step_avg_ms),
            o(r.tok_per_s),
            r.finished.to_string(),
            o(r.diverged_at),
            r.status.words().to_string(),
        ];
        writeln!(out, "{}", cells.join(",")).unwrap();
    }
    out
}

#[derive(Serialize)]
struct JsonReport<'a> {
    target: Option<f64>,
    runs: &'a [RunRow],
    groups: &'a [GroupStats],
    comparisons: &'a [PairTest],
}

fn json(cmp: &Comparison) -> String {
    let rep = JsonReport {
        target: cmp.common_target(),
        runs: &cmp.rows,
        groups: &cmp.groups,
        comparisons: &cmp.tests,
    };
    // Serializing plain structs of numbers and strings cannot fail; NaN becomes null.
    serde_json::to_string_pretty(&rep).expect("report serializes") + "\n"
}

impl Comparison<'_> {
    /// The comparison in the requested text format.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Markdown => markdown(self),
            Format::Csv => csv(&self.rows),
            Format::Json => json(self),
        }
    }
}
