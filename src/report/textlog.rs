//! modded-nanogpt's own text logs (its `records/…/*.txt`, e.g. data/records/): the training
//! script, the `nvidia-smi` table, then one line per step,
//! `step:N/M train_loss:X train_time:Tms step_avg:Ams`, and one per validation,
//! `step:N/M val_loss:X train_time:Tms step_avg:Ams`. Read as a run so that a run of ours can be
//! put next to a published record.
use super::record::{RunRecord, Source, Status, TrainPoint, ValPoint, UNTIMED_STEPS};
use anyhow::{bail, Result};
use std::path::Path;

/// The optimizer column of a text log: the log says which code ran, not a method name of ours.
pub const TEXT_LOG_OPTIM: &str = "modded-nanogpt";

/// modded-nanogpt's track-1 target (its README: "≤ 3.28 validation loss on FineWeb"); a text log
/// does not state it, and `--target` overrides it.
const SPEEDRUN_TARGET: f64 = 3.28;

/// The line the script writes between its source code and the step lines.
fn is_separator(line: &str) -> bool {
    line.len() >= 100 && line.bytes().all(|b| b == b'=')
}

fn is_step_line(line: &str) -> bool {
    line.strip_prefix("step:")
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
}

/// Whether `text` is a modded-nanogpt log: it has a step line, or the separator a run writes
/// before its first step.
pub fn is_text_log(text: &str) -> bool {
    text.lines().any(|l| is_step_line(l) || is_separator(l))
}

/// One parsed step line.
#[derive(Debug, PartialEq)]
struct StepLine {
    step: u64,
    steps: u64,
    val_loss: Option<f64>,
    train_loss: Option<f64>,
    train_time_ms: f64,
}

/// `step:N/M key:value …`; `Err` says what is wrong. A line with neither loss (later records
/// print time-only lines) is returned with both losses `None`.
fn parse_step_line(line: &str) -> std::result::Result<StepLine, String> {
    let mut fields = line.split_whitespace();
    let head = fields.next().unwrap_or("");
    let (n, m) = head["step:".len()..]
        .split_once('/')
        .ok_or_else(|| format!("{head:?} is not step:N/M"))?;
    let int = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("{head:?} is not step:N/M"))
    };
    let (step, steps) = (int(n)?, int(m)?);
    let (mut val_loss, mut train_loss, mut train_time_ms) = (None, None, None);
    for f in fields {
        let Some((k, v)) = f.split_once(':') else {
            return Err(format!("{f:?} is not key:value"));
        };
        let num = |s: &str| {
            s.parse::<f64>()
                .map_err(|_| format!("{k}:{v} is not a number"))
        };
        match k {
            "val_loss" => val_loss = Some(num(v)?),
            "train_loss" => train_loss = Some(num(v)?),
            "train_time" => {
                let ms = v
                    .strip_suffix("ms")
                    .ok_or_else(|| format!("train_time:{v} lacks its ms unit"))?;
                train_time_ms = Some(num(ms)?);
            }
            // step_avg (NaN for the first steps) and anything later versions add.
            _ => {}
        }
    }
    Ok(StepLine {
        step,
        steps,
        val_loss,
        train_loss,
        train_time_ms: train_time_ms.ok_or("no train_time field")?,
    })
}

/// `name : int = 8*64  # comment` in the script's Hyperparameters block, as a number.
fn int_setting(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix(name)?.trim_start();
        let rest = rest.strip_prefix(':')?.trim_start().strip_prefix("int")?;
        let expr = rest.trim_start().strip_prefix('=')?;
        let expr = expr.split('#').next()?.trim();
        expr.split('*')
            .map(|f| f.trim().parse::<u64>().ok())
            .product::<Option<u64>>()
    })
}

/// The GPUs of the `nvidia-smi` table: `|   0  NVIDIA H100 80GB HBM3   On  | …`.
fn gpus(text: &str) -> Option<String> {
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let cell = l.strip_prefix('|')?.split('|').next()?.trim();
            let (idx, rest) = cell.split_once(char::is_whitespace)?;
            idx.parse::<u32>().ok()?;
            let name = rest.trim().split("  ").next()?.trim();
            // The processes table below it has rows `|    0   N/A  N/A  …`.
            (!name.is_empty() && name != "N/A").then_some(name)
        })
        .collect();
    let first = *names.first()?;
    Some(if names.iter().all(|n| *n == first) {
        format!("{}× {first}", names.len())
    } else {
        names.join(", ")
    })
}

/// Read a modded-nanogpt text log as a run. The record-4 clock starts after step 10, so the
/// times it prints for steps 0–10 (compilation included) are read as 0, as the trainer here
/// writes them. Tokens are `step × batch_size × sequence_length` when the embedded script
/// states both.
pub fn load_text_log(path: &Path, text: &str) -> Result<RunRecord> {
    let lines: Vec<&str> = text.lines().collect();
    let last_step_line = lines.iter().rposition(|l| is_step_line(l));
    let batch_tokens = int_setting(text, "batch_size")
        .zip(int_setting(text, "sequence_length"))
        .map(|(b, t)| b * t);
    let (mut val, mut train, mut steps) = (Vec::new(), Vec::new(), None);
    for (i, line) in lines.iter().enumerate() {
        if !is_step_line(line) {
            continue;
        }
        let s = match parse_step_line(line) {
            Ok(s) => s,
            // A live run's last line may be cut mid-write.
            Err(_) if Some(i) == last_step_line => break,
            Err(e) => bail!("{}:{}: malformed step line: {e}", path.display(), i + 1),
        };
        steps = Some(s.steps);
        let train_time_ms = if s.step <= UNTIMED_STEPS {
            0.0
        } else {
            s.train_time_ms
        };
        let tokens = batch_tokens.map(|b| b * s.step);
        if let Some(val_loss) = s.val_loss {
            val.push(ValPoint {
                step: s.step,
                tokens,
                train_time_ms,
                val_loss,
            });
        }
        if let Some(loss) = s.train_loss {
            let prev: Option<&TrainPoint> = train.last();
            let step_ms = match prev {
                Some(p) if p.step + 1 == s.step && p.step > UNTIMED_STEPS => {
                    train_time_ms - p.train_time_ms
                }
                _ => f64::NAN,
            };
            train.push(TrainPoint {
                step: s.step,
                loss,
                loss_rank0_last: Some(loss),
                tokens,
                step_ms,
                train_time_ms,
            });
        }
    }
    let mut hparams = Vec::new();
    if let Some(m) = steps {
        hparams.push(("steps".to_string(), m.to_string()));
    }
    if let Some(b) = batch_tokens {
        hparams.push(("batch_tokens".to_string(), b.to_string()));
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let finished = matches!((val.last(), steps), (Some(v), Some(m)) if v.step == m);
    Ok(RunRecord {
        dir: path.to_path_buf(),
        name,
        seed: None,
        optim: TEXT_LOG_OPTIM.to_string(),
        hparams,
        config: toml::Value::Table(Default::default()),
        device: gpus(text).unwrap_or_else(|| "?".to_string()),
        precision: None,
        git_commit: None,
        target_loss: Some(SPEEDRUN_TARGET),
        batch_tokens,
        finished,
        // A text log says nothing of its writer: short of its last step, it may still grow.
        status: if finished {
            Status::Finished
        } else {
            Status::Running
        },
        val,
        train,
        summary: None,
        diverged_at: None,
        source: Source::TextLog,
        scalars: Default::default(),
        samples: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lines_parse_and_bad_ones_are_named() {
        let s =
            parse_step_line("step:125/6200 val_loss:5.2017 train_time:24564ms step_avg:213.60ms")
                .unwrap();
        assert_eq!(
            s,
            StepLine {
                step: 125,
                steps: 6200,
                val_loss: Some(5.2017),
                train_loss: None,
                train_time_ms: 24564.0
            }
        );
        let s = parse_step_line("step:1/6200 train_loss:10.9184 train_time:74701ms step_avg:nanms")
            .unwrap();
        assert_eq!((s.train_loss, s.val_loss), (Some(10.9184), None));
        let e = parse_step_line("step:3/10 val_loss:abc train_time:1ms").unwrap_err();
        assert_eq!(e, "val_loss:abc is not a number");
        let e = parse_step_line("step:3/10 val_loss:3.3").unwrap_err();
        assert_eq!(e, "no train_time field");
        let e = parse_step_line("step:3 val_loss:3.3 train_time:1ms").unwrap_err();
        assert!(e.contains("is not step:N/M"), "{e}");
        let e = parse_step_line("step:3/4 val_loss:3.3 train_time:15").unwrap_err();
        assert!(e.contains("lacks its ms unit"), "{e}");
    }

    #[test]
    fn script_settings_and_gpus_are_read() {
        let script = "    batch_size : int = 8*64 # batch size, in sequences\n    \
                      sequence_length : int = 1024 # sequence length, in tokens\n";
        assert_eq!(int_setting(script, "batch_size"), Some(512));
        assert_eq!(int_setting(script, "sequence_length"), Some(1024));
        assert_eq!(int_setting(script, "device_batch_size"), None);
        let smi = "|   0  NVIDIA H100 80GB HBM3          On  | 00000000:19:00.0 Off |\n\
                   |   1  NVIDIA H100 80GB HBM3          On  | 00000000:3B:00.0 Off |\n\
                   | N/A   31C    P0             115W / 700W |   5837MiB / 81559MiB |\n";
        assert_eq!(gpus(smi).as_deref(), Some("2× NVIDIA H100 80GB HBM3"));
        assert_eq!(gpus("no table"), None);
    }
}
