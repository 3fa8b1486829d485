//! `speedrun sample RUN|CHECKPOINT|FILE.safetensors [--prompt TEXT] [--tokens N]
//! [--temperature T] [--top-k K] [--top-p P] [--seed S] [--samples N] [--device D]
//! [--format text|json] [--no-cache]`: what a model writes, streamed as it is written.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::DType;
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::data::tokenize::load_tokenizer;
use crate::model::generate::{generate, GenerateOptions, Generated};
use crate::model::sampling::{Sampler, SamplingParams};
use crate::train::config::{self, Config, DEFAULT_PRESET};
use crate::train::samples::encode_prompt;
use crate::train::weights::{self, Weights};
use crate::train::{signals, Stopped};

/// The shape of weights that belong to no run.
#[derive(Debug, Clone, Args)]
pub struct ShapeArgs {
    /// For a .safetensors file outside a run: the preset (name or TOML file) that gives the
    /// model's shape [default: shakespeare-tiny]. A run's checkpoints use its own config.toml.
    #[arg(long, short = 'c')]
    pub config: Option<String>,
    /// Override a field of that preset, e.g. --set model.n_layer=2 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

impl ShapeArgs {
    /// The weights `path` names, with this preset for a bare file.
    pub fn resolve(&self, path: &std::path::Path) -> Result<Weights> {
        let given = self.config.is_some() || !self.sets.is_empty();
        let preset = given.then(|| self.load());
        weights::resolve(path, preset)
    }

    fn load(&self) -> Result<Config> {
        config::load(self.config.as_deref().unwrap_or(DEFAULT_PRESET), &self.sets)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// The prompt and the text, streamed token by token.
    #[default]
    Text,
    /// One JSON object per sample (prompt, token ids, text, timings), one per line.
    Json,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// A run directory (its newest intact checkpoint, as --resume picks it), a checkpoint
    /// directory, or a .safetensors file (its shape from -c/--set).
    pub weights: PathBuf,
    /// The text to continue; empty starts from <|endoftext|>, as every document does.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Tokens to generate per sample.
    #[arg(long, default_value_t = 256)]
    pub tokens: usize,
    /// Softmax temperature; 0 is greedy (the most likely token every time).
    #[arg(long, default_value_t = 0.8, value_parser = parse_temperature, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Draw among the K most likely tokens only; 0 keeps every token.
    #[arg(long, default_value_t = 200, allow_negative_numbers = true)]
    pub top_k: usize,
    /// Draw among the fewest most likely tokens whose probabilities reach P, in (0, 1].
    #[arg(long, default_value_t = 1.0, value_parser = parse_top_p, allow_negative_numbers = true)]
    pub top_p: f64,
    /// Seed of the draws: the same seed, weights and flags give the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples to write, one after the other (the draws continue from one seed).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub samples: u64,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, value_enum, default_value_t)]
    pub format: OutputFormat,
    /// Re-run the whole context for every token instead of decoding with the KV cache (slower;
    /// the same tokens).
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub shape: ShapeArgs,
}

fn parse_temperature(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!("{s:?} is not a temperature >= 0 (0 is greedy)")),
    }
}

fn parse_top_p(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 1.0 => Ok(p),
        _ => Err(format!("{s:?} is not a probability in (0, 1]")),
    }
}

/// One `--format json` line.
#[derive(Serialize)]
struct SampleJson<'a> {
    sample: u64,
    weights: &'a str,
    step: Option<usize>,
    prompt: &'a str,
    prompt_tokens: &'a [u32],
    tokens: &'a [u32],
    text: String,
    first_token_ms: f64,
    tok_per_s: f64,
    stopped: bool,
}

pub fn run(a: SampleArgs) -> Result<()> {
    signals::install()?;
    let w = a.shape.resolve(&a.weights)?;
    let tok = load_tokenizer(None)?;
    let prompt = encode_prompt(&tok, &a.prompt, &w.cfg.model, "--prompt")?;
    let params = SamplingParams {
        temperature: a.temperature,
        top_k: (a.top_k > 0).then_some(a.top_k),
        top_p: a.top_p,
    };
    let device = crate::device::parse_device(&a.device)?;
    let limit = w.cfg.model.vocab_size.min(tok.get_vocab_size(true));
    let mut s = Session {
        model: w.load(&device)?,
        sampler: Sampler::new(params, a.seed, limit)?,
        tok,
        prompt,
        w,
    };
    let mut out = std::io::stdout().lock();
    for i in 0..a.samples {
        let Some(g) = s.one(&a, i, &mut out)? else {
            // The reader went away (`| head`): nothing more to say.
            return Ok(());
        };
        if let Some(signal) = signals::pending() {
            let done = format!(
                "sample {} of {} stopped after {}",
                i + 1,
                a.samples,
                stats(&g)
            );
            return Err(Stopped::Halted { signal, done }.into());
        }
    }
    Ok(())
}

/// What every sample of one command uses.
struct Session {
    w: Weights,
    model: crate::model::Gpt,
    tok: tokenizers::Tokenizer,
    prompt: Vec<u32>,
    sampler: Sampler,
}

impl Session {
    /// Sample `i`: streamed as text, or one JSON line at its end. `None` when stdout was closed.
    fn one(&mut self, a: &SampleArgs, i: u64, out: &mut impl Write) -> Result<Option<Generated>> {
        let text_mode = a.format == OutputFormat::Text;
        if text_mode {
            let sep = if i > 0 { "\n---------------\n" } else { "" };
            if !write_or_stop(out, &format!("{sep}{}", a.prompt))? {
                return Ok(None);
            }
        }
        let opts = GenerateOptions {
            max_new: a.tokens,
            cache: !a.no_cache,
            compute: DType::F32,
        };
        let mut stream = self.tok.decode_stream(false);
        let mut open = true;
        let g = generate(&self.model, &self.prompt, &opts, &mut self.sampler, |id| {
            if text_mode {
                let piece = stream
                    .step(id)
                    .map_err(|e| anyhow::anyhow!("decoding token {id}: {e}"))?;
                open = write_or_stop(out, piece.as_deref().unwrap_or(""))?;
            }
            // Ctrl-C: stop after the token in progress, which is written.
            Ok(if open && signals::pending().is_none() {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            })
        })?;
        if text_mode {
            if !open || !write_or_stop(out, "\n")? {
                return Ok(None);
            }
            if !g.stopped {
                eprintln!("[{}]", stats(&g));
            }
            return Ok(Some(g));
        }
        let text = self
            .tok
            .decode(&g.tokens, false)
            .map_err(|e| anyhow::anyhow!("decoding the sample: {e}"))?;
        let line = serde_json::to_string(&SampleJson {
            sample: i,
            weights: &self.w.label,
            step: self.w.step,
            prompt: &a.prompt,
            prompt_tokens: &self.prompt,
            tokens: &g.tokens,
            text,
            first_token_ms: g.first_token.as_secs_f64() * 1e3,
            tok_per_s: g.decode_tok_per_s(),
            stopped: g.stopped,
        })?;
        Ok(write_or_stop(out, &format!("{line}\n"))?.then_some(g))
    }
}

/// `N tokens, the first after X ms, then Y tok/s` (no rate for fewer than 2 tokens).
fn stats(g: &Generated) -> String {
    let n = g.tokens.len();
    let first = g.first_token.as_secs_f64() * 1e3;
    match n {
        0 => "no tokens".to_string(),
        1 => format!("1 token, after {first:.0} ms"),
        _ => format!(
            "{n} tokens, the first after {first:.0} ms, then {:.1} tok/s",
            g.decode_tok_per_s()
        ),
    }
}

/// Write and flush `s`; false when the reader has closed the pipe.
fn write_or_stop(out: &mut impl Write, s: &str) -> Result<bool> {
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}
