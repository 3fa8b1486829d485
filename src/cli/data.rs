//! `speedrun data …` subcommands: tokenize, fetch, inspect.
use crate::data::fetch::{
    fetch_fineweb, fetch_tinystories, FetchConfig, Outcome, TINYSTORIES_REPO,
};
use crate::data::inspect::inspect;
use crate::data::tokenize::{tokenize, DocSplit, TokenizeOptions, ValSplit, DEFAULT_SHARD_TOKENS};
use crate::data::GPT2_VOCAB;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Tokenize .txt / .jsonl (optionally .gz) files into GPT-2 token shards.
    Tokenize(TokenizeArgs),
    /// Download a dataset from the Hugging Face hub (or a mirror).
    Fetch(FetchArgs),
    /// Summarise shards: counts, first tokens decoded, id range.
    Inspect(InspectArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Recipe {
    /// llm.c dev/data/tinyshakespeare.py: split on "\n\n", val = first 32768 tokens.
    LlmCShakespeare,
}

#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// Input files (.txt, .jsonl, .txt.gz, .jsonl.gz), tokenized in this order.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output directory.
    #[arg(long, short, default_value = "data/tokens")]
    pub out: PathBuf,
    /// Output file prefix: `<prefix>_val_000000.bin`, `<prefix>_train_000001.bin`, ...
    #[arg(long, default_value = "data")]
    pub prefix: String,
    /// Tokens per shard (FineWeb10B uses 100M).
    #[arg(long, default_value_t = DEFAULT_SHARD_TOKENS)]
    pub shard_size: usize,
    /// Fraction of all tokens (taken from the start) that form the validation split.
    #[arg(long, conflicts_with = "val_tokens")]
    pub val_fraction: Option<f64>,
    /// Number of tokens (from the start) that form the validation split.
    #[arg(long)]
    pub val_tokens: Option<usize>,
    /// Document separator in .txt files (documents are trimmed, empty ones dropped).
    #[arg(long, default_value = "<|endoftext|>")]
    pub separator: String,
    /// Each .txt file is one document.
    #[arg(long, conflicts_with = "separator")]
    pub doc_per_file: bool,
    /// A fixed recipe (overrides the split and val options).
    #[arg(long, value_enum)]
    pub recipe: Option<Recipe>,
    /// A tokenizer.json to use instead of the embedded GPT-2 one.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Dataset {
    /// kjj0/fineweb10B-gpt2 (pre-tokenized shards).
    #[value(name = "fineweb10B")]
    Fineweb10B,
    /// roneneldan/TinyStories V2-GPT4 text, tokenized here.
    Tinystories,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    pub dataset: Dataset,
    /// FineWeb train shards to fetch (1..=103), 100M tokens each.
    #[arg(long, default_value_t = 9)]
    pub train_shards: usize,
    /// Output directory (default data/<dataset>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Hub endpoint or mirror (default $HF_ENDPOINT, else https://huggingface.co).
    #[arg(long)]
    pub endpoint: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A shard file, a directory of *.bin shards, or a glob.
    pub pattern: String,
    /// Vocabulary size to check ids against.
    #[arg(long, default_value_t = GPT2_VOCAB)]
    pub vocab: usize,
    /// How many leading tokens of the first shard to decode.
    #[arg(long, default_value_t = 32)]
    pub head: usize,
}

pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Tokenize(a) => run_tokenize(a),
        DataCommand::Fetch(a) => run_fetch(a),
        DataCommand::Inspect(a) => run_inspect(a),
    }
}

fn run_tokenize(a: TokenizeArgs) -> Result<()> {
    // The prefix becomes part of every shard's file name: it must not lead out of --out.
    crate::fsutil::check_name(&a.prefix).context("--prefix")?;
    let opts = match a.recipe {
        Some(Recipe::LlmCShakespeare) => TokenizeOptions {
            shard_tokens: a.shard_size,
            tokenizer: a.tokenizer,
            progress: true,
            ..TokenizeOptions::llm_c_shakespeare(a.inputs, a.out, &a.prefix)
        },
        None => TokenizeOptions {
            inputs: a.inputs,
            out_dir: a.out,
            prefix: a.prefix,
            shard_tokens: a.shard_size,
            val: match (a.val_fraction, a.val_tokens) {
                (_, Some(n)) => ValSplit::Tokens(n),
                (Some(f), None) => ValSplit::Fraction(f),
                (None, None) => ValSplit::Fraction(0.1),
            },
            split: if a.doc_per_file {
                DocSplit::PerFile
            } else {
                DocSplit::Separator(a.separator)
            },
            tokenizer: a.tokenizer,
            progress: true,
        },
    };
    let start = Instant::now();
    let r = tokenize(&opts)?;
    let secs = start.elapsed().as_secs_f64();
    if r.documents == 0 || r.val_tokens + r.train_tokens == 0 {
        bail!(
            "{}: no text to tokenize (empty input)",
            inputs_label(&opts.inputs)
        );
    }
    for f in &r.files {
        println!("wrote {}", f.display());
    }
    println!(
        "{} documents, {} tokens ({} val, {} train) from {:.2} MB in {:.2} s: {:.2} MB/s, {:.0} tokens/s",
        r.documents,
        r.val_tokens + r.train_tokens,
        r.val_tokens,
        r.train_tokens,
        r.input_bytes as f64 / 1e6,
        secs,
        r.input_bytes as f64 / 1e6 / secs,
        (r.val_tokens + r.train_tokens) as f64 / secs
    );
    Ok(())
}

fn inputs_label(inputs: &[PathBuf]) -> String {
    let names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

fn run_fetch(a: FetchArgs) -> Result<()> {
    let default_dir = match a.dataset {
        Dataset::Fineweb10B => "data/fineweb10B",
        Dataset::Tinystories => "data/tinystories_full",
    };
    let cfg = FetchConfig {
        endpoint: a.endpoint,
        out: a.out.unwrap_or_else(|| PathBuf::from(default_dir)),
        progress: true,
    };
    println!("fetching from {}", cfg.endpoint());
    let existed = cfg.out.exists();
    let fetched = match a.dataset {
        Dataset::Fineweb10B => fetch_fineweb(&cfg, a.train_shards).map(|o| (o, vec![])),
        Dataset::Tinystories => fetch_tinystories(&cfg, TINYSTORIES_REPO, None),
    };
    if fetched.is_err() && !existed {
        // Nothing was fetched into the directory this run made: leave no empty directory behind
        // (remove_dir only removes an empty one).
        let _ = std::fs::remove_dir(&cfg.out);
    }
    let (outcomes, shards) = fetched?;
    for o in outcomes {
        match o {
            Outcome::Downloaded(p) => println!("downloaded {}", p.display()),
            Outcome::Skipped(p) => println!("skipped {} (already complete)", p.display()),
        }
    }
    for s in shards {
        println!("shard {}", s.display());
    }
    Ok(())
}

fn run_inspect(a: InspectArgs) -> Result<()> {
    let sum = inspect(&a.pattern, a.vocab, a.head)?;
    println!("{} shard(s)", sum.shards.len());
    for (f, n) in &sum.shards {
        println!("{n:>14} tokens  {}", f.display());
    }
    println!("{:>14} tokens  total", sum.total);
    if sum.total == 0 {
        bail!("{}: all shards are empty", a.pattern);
    }
    println!("first {} ids: {:?}", sum.head.len(), sum.head);
    println!("decoded: {:?}", sum.decoded);
    println!("min id {}, max id {}", sum.min_id, sum.max_id);
    if !sum.ids_in_vocab() {
        bail!(
            "{}: token id {} >= vocab {}: unusable for training with this vocabulary",
            a.pattern,
            sum.max_id,
            sum.vocab
        );
    }
    println!("all ids < vocab {}", sum.vocab);
    Ok(())
}
