//! `speedrun eval RUN|CHECKPOINT|FILE.safetensors… [--data GLOB] [--tokens N]
//! [--format markdown|json]`: the loss and perplexity of each checkpoint on token shards, scored
//! by validation's own code (`train::step::validate`: the same micro-batches and dtype), so that a
//! run's own val shards give back its last val loss exactly.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::DType;
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::sample::ShapeArgs;
use crate::report::{md_escape, md_table};
use crate::train::step::validate;
use crate::train::trainer::val_loader;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum EvalFormat {
    #[default]
    Markdown,
    Json,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directories (each one's newest intact checkpoint, as --resume picks it), checkpoint
    /// directories or .safetensors files (their shape from -c/--set).
    #[arg(required = true)]
    pub weights: Vec<PathBuf>,
    /// Token shards to score: a directory, a file or a glob, relative to --data-dir [default:
    /// each run's own val shards].
    #[arg(long, value_name = "GLOB")]
    pub data: Option<String>,
    /// Tokens to score from the start of the shards, a multiple of the validation micro-batch
    /// (train.val_micro_batch × model.seq_len) [default: the run's train.val_tokens].
    #[arg(long)]
    pub tokens: Option<usize>,
    #[arg(long, value_enum, default_value_t)]
    pub format: EvalFormat,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Score in bf16 (validation runs in fp32 unless the run was trained with --val-bf16).
    #[arg(long)]
    pub bf16: bool,
    /// Where relative data paths start [default: $SPEEDRUN_DATA, else the current directory;
    /// the default preset's shards are also built in].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub shape: ShapeArgs,
}

/// One row of the table.
#[derive(Debug, Serialize)]
struct Scored {
    weights: String,
    step: Option<usize>,
    data: String,
    tokens: usize,
    loss: f64,
    perplexity: f64,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let device = crate::device::parse_device(&a.device)?;
    let dtype = if a.bf16 { DType::BF16 } else { DType::F32 };
    let mut rows = Vec::new();
    for path in &a.weights {
        let w = a.shape.resolve(path)?;
        let mut cfg = w.cfg.clone();
        cfg.data_root = a.data_dir.clone();
        let data = a.data.clone().unwrap_or_else(|| cfg.data.val.clone());
        let tokens = a.tokens.unwrap_or(cfg.train.val_tokens);
        let what = if a.tokens.is_some() {
            "--tokens"
        } else {
            "train.val_tokens"
        };
        let (mut loader, steps) =
            val_loader(&cfg, &data, tokens, what).with_context(|| format!("{}", path.display()))?;
        let model = w.load(&device)?;
        let loss = validate(&model, &mut loader, steps, &device, dtype)?;
        rows.push(Scored {
            weights: w.label,
            step: w.step,
            data,
            tokens,
            loss,
            perplexity: loss.exp(),
        });
    }
    match a.format {
        EvalFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        EvalFormat::Markdown => print!("{}", markdown(&rows)),
    }
    Ok(())
}

fn markdown(rows: &[Scored]) -> String {
    let mut out = String::new();
    let head = ["weights", "step", "data", "tokens", "loss", "perplexity"];
    md_table(
        &mut out,
        &head,
        rows.iter().map(|r| {
            vec![
                md_escape(&r.weights),
                r.step.map_or("-".into(), |s| s.to_string()),
                md_escape(&r.data),
                r.tokens.to_string(),
                format!("{:.6}", r.loss),
                format!("{:.3}", r.perplexity),
            ]
        }),
    );
    out
}
