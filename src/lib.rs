//! speedrun: the modded-nanogpt record-4 GPT-2 trainer on candle, with an optimizer race
//! (AdamW, Muon, Newton-Muon, Neon).
//!
//! The crate follows the pipeline: `data` (shards, loader, tokenizer, hub fetch) → `model`
//! (record-4 GPT) → `optim` (one optimizer per file behind [`optim::Optimizer`]) → `train`
//! (config, schedule, loop, checkpoints) → `report` (compare runs), with `cli` on top. Beside
//! them: `device` (the execution policy), `dist` (the processes of a data-parallel run),
//! `fsutil` (the one atomic file writer, file-name rules) and `out` (console output that a
//! closed pipe cannot kill).

pub mod alloc;
pub mod cli;
pub mod cpu;
pub mod data;
pub mod device;
pub mod dist;
pub mod fsutil;
pub mod model;
pub mod optim;
pub mod out;
pub mod report;
pub mod train;

/// Collapse a multi-line message (toml's errors quote the source over several lines) into one
/// line, for the one-line errors the CLI prints.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its causes in one line, each joined by ": " as `{e:#}` does, but a cause whose
/// text the message already holds is not repeated (candle's I/O error quotes its source, so a
/// full disk read "No space left on device" twice).
pub fn error_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    one_line(&out)
}

/// A TOML parse error of `text` in one short line: `line L, column C: MESSAGE`. toml's own
/// Display quotes the offending source line, which for a hostile file (100,000 nested arrays)
/// is itself hundreds of kilobytes.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = fsutil::shorten(&one_line(e.message()), 200);
    match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            format!("line {line}, column {col}: {msg}")
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_line_says_each_cause_once() {
        // candle's I/O error quotes its source: a full disk read "No space left on device" twice.
        let io = std::io::Error::from_raw_os_error(28);
        let quoted = anyhow::Error::new(std::io::Error::from_raw_os_error(28))
            .context(format!("I/O error: {io}"))
            .context("x.safetensors: cannot write");
        let line = error_line(&quoted);
        assert_eq!(line.matches("No space left on device").count(), 1, "{line}");
        assert!(
            line.starts_with("x.safetensors: cannot write: I/O error: No space"),
            "{line}"
        );
    }

    #[test]
    fn a_toml_error_is_short_and_placed() {
        let text = format!("a = 1\nb = {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = toml::from_str::<toml::Table>(&text).unwrap_err();
        let msg = toml_error(&text, &e);
        assert!(
            msg.starts_with("line 2, column ") && msg.len() < 300,
            "{msg:.400}"
        );
    }
}
