//! The log a resume continues: `log.jsonl` cut back to the checkpoint's step, with the
//! validation of that step in it exactly once, so that the resumed run's log equals a straight
//! run's record for record.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::log::Record;
use super::progress::Progress;
use crate::out;

/// The two fields of a record that decide whether a resume keeps it.
#[derive(Deserialize)]
struct KindStep {
    kind: String,
    step: usize,
}

/// Rewrite `path` (atomically) as the log a resume from `p` continues: every record before
/// `p.step`, and of `p.step` the train, diagnostics, optimizer and epoch records. The val and
/// target records of `p.step` are kept when the checkpoint holds that validation, and written
/// back from it when the log lost them (a last line cut by a crash or by hand); when it does not
/// hold it (the run was stopped before validating there) they are dropped, for the resumed run
/// validates that step itself. `tokens` is the token count at `p.step`.
///
/// A last line that does not parse is a write cut short and is dropped; a damaged line before it
/// (not UTF-8, not a record) is dropped with a warning naming it.
pub fn prepare_log(path: &Path, p: &Progress, tokens: u64) -> Result<()> {
    let step = p.step;
    let validated = p.val_step == Some(step);
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            out::err_line(&format!(
                "warning: {}: missing; the resumed log starts after step {step}",
                path.display()
            ));
            Vec::new()
        }
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let mut kept = String::new();
    let (mut has_train, mut has_val, mut has_target) = (false, false, false);
    for (i, raw) in lines.iter().enumerate() {
        let parsed = std::str::from_utf8(raw)
            .map_err(|_| "not UTF-8 text")
            .and_then(|t| {
                serde_json::from_str::<KindStep>(t)
                    .map(|r| (t, r))
                    .map_err(|_| "not a log record")
            });
        let (text, r) = match parsed {
            Ok(x) => x,
            Err(_) if i + 1 == lines.len() => continue,
            Err(why) => {
                out::err_line(&format!(
                    "warning: {}: record {} is {why} (damaged); dropped",
                    path.display(),
                    i + 1
                ));
                continue;
            }
        };
        let at_step = r.step == step;
        let keep = match r.kind.as_str() {
            "val" | "target" => r.step < step || (at_step && validated),
            _ => r.step <= step,
        };
        if !keep {
            continue;
        }
        has_train |= at_step && r.kind == "train";
        has_val |= at_step && r.kind == "val";
        has_target |= at_step && r.kind == "target";
        kept.push_str(text);
        kept.push('\n');
    }
    if validated {
        let mut put = |r: &Record| -> Result<()> {
            kept.push_str(&serde_json::to_string(r)?);
            kept.push('\n');
            Ok(())
        };
        if let (false, Some(val_loss)) = (has_val, p.last_val_loss) {
            put(&Record::Val {
                step,
                val_loss,
                tokens,
                train_time_ms: p.train_time_ms,
            })?;
        }
        if let (false, Some(h)) = (has_target, p.target.as_ref().filter(|h| h.step == step)) {
            put(&Record::Target {
                step,
                tokens: h.tokens,
                train_time_ms: h.train_time_ms,
                val_loss: h.val_loss,
            })?;
        }
    }
    if step > 0 && !has_train && !bytes.is_empty() {
        out::err_line(&format!(
            "warning: {}: the train record of step {step} was cut off; the resumed log goes on without it",
            path.display()
        ));
    }
    crate::fsutil::write_atomic(path, kept.as_bytes())
}

/// The values of the last `optim` record of a log (empty when there is none): a resumed run
/// writes diagnostics only where they change from these, as the straight run did.
pub fn last_diagnostics(path: &Path) -> BTreeMap<String, f64> {
    let bytes = fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .lines()
        .rev()
        .find_map(|l| match serde_json::from_str::<Record>(l) {
            Ok(Record::Optim { values, .. }) => Some(values),
            _ => None,
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::progress::TargetHit;

    fn kinds(path: &Path) -> Vec<(String, usize)> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let r: KindStep = serde_json::from_str(l).unwrap();
                (r.kind, r.step)
            })
            .collect()
    }

    fn log_of(lines: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        fs::write(&path, lines.join("\n")).unwrap();
        (dir, path)
    }

    const TRAIN3: &str =
        r#"{"kind":"train","step":3,"loss":5.0,"tokens":30,"step_ms":1.0,"train_time_ms":0.0}"#;
    const VAL3: &str = r#"{"kind":"val","step":3,"val_loss":4.5,"tokens":30,"train_time_ms":0.0}"#;
    const TRAIN4: &str =
        r#"{"kind":"train","step":4,"loss":4.9,"tokens":40,"step_ms":1.0,"train_time_ms":0.0}"#;

    fn at3(validated: bool) -> Progress {
        Progress {
            step: 3,
            last_val_loss: Some(4.5),
            val_step: validated.then_some(3),
            target: validated.then_some(TargetHit {
                step: 3,
                tokens: 30,
                train_time_ms: 0.0,
                val_loss: 4.5,
            }),
            ..Progress::default()
        }
    }

    #[test]
    fn a_validated_checkpoint_keeps_or_restores_its_val_and_target() {
        let (_d, path) = log_of(&[TRAIN3, VAL3, TRAIN4]);
        prepare_log(&path, &at3(true), 30).unwrap();
        let k = kinds(&path);
        assert_eq!(
            k,
            [("train".into(), 3), ("val".into(), 3), ("target".into(), 3)]
        );
        // The val line cut mid-write: both come back from the checkpoint, equal to the originals.
        let (_d, cut) = log_of(&[TRAIN3, &VAL3[..20]]);
        prepare_log(&cut, &at3(true), 30).unwrap();
        let text = fs::read_to_string(&cut).unwrap();
        assert_eq!(text.lines().nth(1).unwrap(), VAL3);
        assert_eq!(kinds(&cut).len(), 3);
    }

    #[test]
    fn an_unvalidated_checkpoint_drops_its_steps_val_for_the_resume_to_redo() {
        let (_d, path) = log_of(&[TRAIN3, VAL3, TRAIN4]);
        prepare_log(&path, &at3(false), 30).unwrap();
        assert_eq!(kinds(&path), [("train".into(), 3)]);
    }

    #[test]
    fn damaged_lines_are_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let mut bytes = TRAIN3.as_bytes().to_vec();
        bytes.extend_from_slice(b"\n\xff\xfe not text\n");
        bytes.extend_from_slice(VAL3.as_bytes());
        fs::write(&path, bytes).unwrap();
        prepare_log(&path, &at3(true), 30).unwrap();
        assert_eq!(kinds(&path).len(), 3);
    }
}
