//! Reading a run's `log.jsonl` (docs/run-format.md) with the trainer's own [`Record`] type, also
//! while the trainer is appending to it.
use super::record::{Scalars, TrainPoint, ValPoint};
use crate::train::log::{Diag, LayerDiag, Record, Sample};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

/// The `kind` of a log line, read before the full [`Record`] so that kinds this reader does not
/// know (later additions to the log) can be skipped.
#[derive(Deserialize)]
struct KindOf {
    #[serde(default)]
    kind: serde_json::Value,
}

/// What `compare` takes from `log.jsonl`.
#[derive(Debug, Default)]
pub(crate) struct ParsedLog {
    pub val: Vec<ValPoint>,
    pub train: Vec<TrainPoint>,
    pub diverged_at: Option<u64>,
    /// Every other scalar of the log, by tag (see [`Scalars`]).
    pub scalars: Scalars,
    /// The `sample` records (the text the weights wrote at their step), in log order.
    pub samples: Vec<Sample>,
}

impl ParsedLog {
    fn push(&mut self, tag: String, step: usize, value: f64) {
        self.scalars
            .entry(tag)
            .or_default()
            .push((step as u64, value));
    }

    /// File one record. Each scalar family is one arm: a new record kind with numbers in it
    /// becomes a new family here (and so in the TensorBoard export and the HTML page).
    fn add(&mut self, record: Record) {
        match record {
            Record::Val {
                step,
                val_loss,
                tokens,
                train_time_ms,
            } => self.val.push(ValPoint {
                step: step as u64,
                tokens: Some(tokens),
                train_time_ms,
                val_loss,
            }),
            Record::Train {
                step,
                loss,
                loss_rank0_last,
                lrs,
                tokens,
                step_ms,
                train_time_ms,
                comm_ms,
                diag_ms,
            } => {
                for (group, lr) in lrs {
                    self.push(format!("lr/{group}"), step, lr);
                }
                if let Some(ms) = comm_ms {
                    self.push("time/comm_ms".to_string(), step, ms);
                }
                if let Some(ms) = diag_ms {
                    self.push("time/diag_ms".to_string(), step, ms);
                }
                if let Some(l) = loss_rank0_last {
                    self.push("loss/train_rank0_last".to_string(), step, l);
                }
                self.train.push(TrainPoint {
                    step: step as u64,
                    loss,
                    loss_rank0_last,
                    tokens: Some(tokens),
                    step_ms,
                    train_time_ms,
                });
            }
            Record::Optim { step, values } => {
                for (name, v) in values {
                    self.push(format!("optim/{name}"), step, v);
                }
            }
            Record::Diverged { step, .. } => self.diverged_at = Some(step as u64),
            // "target" duplicates the val record it came from: the target is recomputed from
            // the val records so that `--target` can move it.
            Record::Target { .. } | Record::Epoch { .. } => {}
        }
    }

    /// File a `diag` record: every field of every matrix as `diag/<matrix>/<field>`, and the
    /// medians over the matrices that `compare` plots as `diag/median/<field>`.
    fn add_diag(&mut self, diag: Diag) {
        let step = diag.step;
        for field in MEDIAN_FIELDS {
            let values: Vec<f64> = diag.layers.values().map(|l| field.1(l)).collect();
            if let Some(m) = median(values) {
                self.push(format!("diag/median/{}", field.0), step, m);
            }
        }
        for (name, layer) in diag.layers {
            for (field, value) in layer_fields(&layer) {
                self.push(format!("diag/{name}/{field}"), step, value);
            }
        }
    }
}

/// One field of a matrix's diagnostics.
type FieldOf = fn(&LayerDiag) -> f64;

/// The fields whose median over the matrices `compare` plots against the step.
pub(crate) const MEDIAN_FIELDS: [(&str, FieldOf); 2] = [
    ("nuc_fro_ratio", |l| l.nuc_fro_ratio),
    ("stable_rank", |l| l.stable_rank),
];

/// The median of the finite values, `None` when there are none.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    })
}

/// Every field of one matrix's diagnostics that the record has, by its log name. Going through
/// serde keeps this list the record's own: a field added to [`LayerDiag`] shows up here as is.
fn layer_fields(layer: &LayerDiag) -> Vec<(String, f64)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(layer) else {
        return Vec::new();
    };
    map.into_iter()
        .map(|(k, v)| (k, v.as_f64().unwrap_or(f64::NAN)))
        .collect()
}

/// Parse `log.jsonl`. A last line that is not JSON is the trainer mid-append and is skipped;
/// any other bad line is an error naming the file and line.
pub(crate) fn parse_log(path: &Path, text: &str) -> Result<ParsedLog> {
    let lines: Vec<&str> = text.lines().collect();
    let last_nonempty = lines.iter().rposition(|l| !l.trim().is_empty());
    let mut log = ParsedLog::default();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let kind = match serde_json::from_str::<KindOf>(line) {
            Ok(k) => k.kind,
            Err(e) if e.is_data() => serde_json::Value::Null,
            Err(_) if Some(i) == last_nonempty => break,
            Err(e) => bail!("{}: malformed JSON: {e}", at()),
        };
        let kind = match kind.as_str() {
            Some("diag") => {
                let diag: Diag = serde_json::from_str(line)
                    .with_context(|| format!("{}: bad diag record", at()))?;
                log.add_diag(diag);
                continue;
            }
            Some("sample") => {
                let sample: Sample = serde_json::from_str(line)
                    .with_context(|| format!("{}: bad sample record", at()))?;
                log.samples.push(sample);
                continue;
            }
            Some(k @ ("train" | "val" | "target" | "diverged" | "optim" | "epoch")) => k,
            // Kinds added to the log later are skipped.
            Some(_) => continue,
            None => bail!("{}: record without a \"kind\" string", at()),
        };
        let record: Record =
            serde_json::from_str(line).with_context(|| format!("{}: bad {kind} record", at()))?;
        log.add(record);
    }
    Ok(log)
}
