//! Text → GPT-2 token shards (`speedrun data tokenize`).
//!
//! Tokenization must equal tiktoken's `encode_ordinary`, which fineweb.py, llm.c and
//! modded-nanogpt use: a literal "<|endoftext|>" inside a document is ordinary text, and the only
//! 50256 ids are the EOT tokens we put *before* every document (docs/data.md, "Shard format").
use super::shard::write_shard;
use super::EOT;
use anyhow::{bail, ensure, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// The GPT-2 tokenizer shipped in `data/gpt2/` (see data/README.md), embedded so the command
/// works from any directory.
pub static GPT2_TOKENIZER_JSON: &[u8] = include_bytes!("../../data/gpt2/tokenizer.json");

/// FineWeb10B's shard size (fineweb.py): 100M tokens = 200,001,024 bytes.
pub const DEFAULT_SHARD_TOKENS: usize = 100_000_000;

/// How the validation split is taken: always the *first* tokens of the stream (as fineweb.py's
/// shard 0 and llm.c's tinyshakespeare.py), cut mid-document if need be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValSplit {
    Fraction(f64),
    Tokens(usize),
}

/// How a text file is cut into documents.
#[derive(Debug, Clone, PartialEq)]
pub enum DocSplit {
    /// Split on the separator, trim whitespace, drop empty pieces (the TinyStoriesV2 / shipped
    /// gutenberg convention: documents joined by "\n<|endoftext|>\n").
    Separator(String),
    /// Split on the separator without trimming and append the separator back to every piece but
    /// the last (llm.c `dev/data/tinyshakespeare.py` with "\n\n").
    Rejoin(String),
    /// The whole file is one document (kept verbatim).
    PerFile,
}

#[derive(Debug, Clone)]
pub struct TokenizeOptions {
    /// `.txt`, `.jsonl` (one JSON object with a `text` field per line) or `.gz` of either.
    pub inputs: Vec<PathBuf>,
    pub out_dir: PathBuf,
    pub prefix: String,
    pub shard_tokens: usize,
    pub val: ValSplit,
    pub split: DocSplit,
    /// `None`: the embedded GPT-2 tokenizer.
    pub tokenizer: Option<PathBuf>,
    pub progress: bool,
}

impl TokenizeOptions {
    /// llm.c's tinyshakespeare recipe: sections split on "\n\n" (re-appended to all but the last),
    /// val = the first 32,768 tokens, train = the rest; files `<prefix>_val_000000.bin` and
    /// `<prefix>_train_000001.bin`.
    pub fn llm_c_shakespeare(inputs: Vec<PathBuf>, out_dir: PathBuf, prefix: &str) -> Self {
        Self {
            inputs,
            out_dir,
            prefix: prefix.to_string(),
            shard_tokens: DEFAULT_SHARD_TOKENS,
            val: ValSplit::Tokens(32_768),
            split: DocSplit::Rejoin("\n\n".to_string()),
            tokenizer: None,
            progress: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TokenizeReport {
    pub documents: usize,
    pub input_bytes: usize,
    pub val_tokens: usize,
    pub train_tokens: usize,
    pub files: Vec<PathBuf>,
}

/// The GPT-2 tokenizer, configured to match `encode_ordinary`.
pub fn load_tokenizer(path: Option<&Path>) -> Result<Tokenizer> {
    let mut tok = match path {
        Some(p) => Tokenizer::from_file(p)
            .map_err(|e| anyhow::anyhow!("{}: cannot load tokenizer: {e}", p.display()))?,
        None => Tokenizer::from_bytes(GPT2_TOKENIZER_JSON)
            .map_err(|e| anyhow::anyhow!("embedded GPT-2 tokenizer.json: {e}"))?,
    };
    // Treat added special tokens as plain text: "<|endoftext|>" in a document then encodes as
    // tiktoken's encode_ordinary does (shared data README), not as 50256.
    tok.set_encode_special_tokens(true);
    Ok(tok)
}

/// Read a file's bytes, gunzipping `*.gz`.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: invalid gzip data", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// The file name without a trailing `.gz`, to decide the format.
fn inner_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(".gz").map(str::to_string).unwrap_or(name)
}

/// Read one input file as UTF-8 text (gunzipped if `*.gz`).
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = read_maybe_gz(path)?;
    String::from_utf8(bytes).with_context(|| format!("{}: not valid UTF-8", path.display()))
}

/// Cut the text of `path` into documents. Pieces borrow from `text` where possible, so a large
/// corpus is not held twice.
pub fn split_documents<'a>(
    path: &Path,
    text: &'a str,
    split: &DocSplit,
) -> Result<Vec<Cow<'a, str>>> {
    if inner_name(path).ends_with(".jsonl") {
        let mut docs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}: line {}: invalid JSON", path.display(), i + 1))?;
            match v.get("text").and_then(|t| t.as_str()) {
                // fineweb.py encodes doc["text"] as is, so no trimming here.
                Some(t) => docs.push(Cow::Owned(t.to_string())),
                None => bail!(
                    "{}: line {}: no string field \"text\"",
                    path.display(),
                    i + 1
                ),
            }
        }
        return Ok(docs);
    }
    Ok(match split {
        DocSplit::PerFile => vec![Cow::Borrowed(text)],
        DocSplit::Separator(sep) => {
            ensure!(!sep.is_empty(), "document separator must not be empty");
            // Rust's trim() and Python's str.strip() agree on every whitespace character that
            // occurs in our corpora (they differ only on U+001C..U+001F).
            text.split(sep.as_str())
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(Cow::Borrowed)
                .collect()
        }
        DocSplit::Rejoin(sep) => {
            ensure!(!sep.is_empty(), "document separator must not be empty");
            let parts: Vec<&str> = text.split(sep.as_str()).collect();
            let last = parts.len() - 1;
            parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    if i == last {
                        Cow::Borrowed(*p)
                    } else {
                        Cow::Owned(format!("{p}{sep}"))
                    }
                })
                .collect()
        }
    })
}

/// Encode documents in parallel (one rayon task per document, so a few large documents still
/// spread over the cores), each preceded by EOT; `collect` keeps the input order.
pub fn encode_documents<S: AsRef<str> + Sync>(
    tok: &Tokenizer,
    docs: &[S],
    bar: &ProgressBar,
) -> Result<Vec<u16>> {
    let parts: Vec<Vec<u16>> = docs
        .par_iter()
        .map(|d| -> Result<Vec<u16>> {
            let enc = tok
                .encode_fast(d.as_ref(), false)
                .map_err(|e| anyhow::anyhow!("tokenizer failed: {e}"))?;
            let mut out = Vec::with_capacity(enc.get_ids().len() + 1);
            out.push(EOT as u16);
            for &id in enc.get_ids() {
                ensure!(id <= u16::MAX as u32, "token id {id} does not fit u16");
                out.push(id as u16);
            }
            bar.inc(1);
            Ok(out)
        })
        .collect::<Result<_>>()?;
    Ok(parts.concat())
}

/// Write `tokens` as shards: the first `val_count` tokens as `<prefix>_val_NNNNNN.bin`, then the
/// rest as `<prefix>_train_NNNNNN.bin`, at most `shard_tokens` per file, numbered continuously from
/// 0 (fineweb.py's layout: val 000000, train 000001…).
pub fn write_split(
    tokens: &[u16],
    out_dir: &Path,
    prefix: &str,
    shard_tokens: usize,
    val_count: usize,
) -> Result<Vec<PathBuf>> {
    ensure!(shard_tokens > 0, "shard size must be positive");
    ensure!(
        val_count <= tokens.len(),
        "validation split of {val_count} tokens exceeds the {} tokens produced",
        tokens.len()
    );
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("{}: cannot create output directory", out_dir.display()))?;
    let mut files = Vec::new();
    let mut index = 0usize;
    for (split, part) in [
        ("val", &tokens[..val_count]),
        ("train", &tokens[val_count..]),
    ] {
        for chunk in part.chunks(shard_tokens) {
            let path = out_dir.join(format!("{prefix}_{split}_{index:06}.bin"));
            write_shard(&path, chunk)?;
            files.push(path);
            index += 1;
        }
    }
    Ok(files)
}

fn progress_bar(len: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] [{wide_bar}] {pos}/{len} documents",
        )
        .expect("static template"),
    );
    bar
}

/// Read and encode `inputs` in order; returns (tokens, documents, input bytes).
pub fn encode_files(
    tok: &Tokenizer,
    inputs: &[PathBuf],
    split: &DocSplit,
    progress: bool,
) -> Result<(Vec<u16>, usize, usize)> {
    let mut tokens: Vec<u16> = Vec::new();
    let (mut documents, mut input_bytes) = (0usize, 0usize);
    for path in inputs {
        let text = read_text(path)?;
        let docs = split_documents(path, &text, split)?;
        let bar = progress_bar(docs.len() as u64, progress);
        bar.set_message(inner_name(path));
        tokens.extend(encode_documents(tok, &docs, &bar)?);
        bar.finish();
        documents += docs.len();
        input_bytes += text.len();
    }
    Ok((tokens, documents, input_bytes))
}

/// Tokenize `opts.inputs` (in the given order) into val/train shards.
pub fn tokenize(opts: &TokenizeOptions) -> Result<TokenizeReport> {
    ensure!(!opts.inputs.is_empty(), "tokenize: no input files given");
    let tok = load_tokenizer(opts.tokenizer.as_deref())?;
    let (tokens, documents, input_bytes) =
        encode_files(&tok, &opts.inputs, &opts.split, opts.progress)?;
    let val_count = match opts.val {
        ValSplit::Tokens(n) => n,
        ValSplit::Fraction(f) => {
            ensure!(
                (0.0..1.0).contains(&f),
                "--val-fraction must be in [0, 1), got {f}"
            );
            (tokens.len() as f64 * f).round() as usize
        }
    };
    let files = write_split(
        &tokens,
        &opts.out_dir,
        &opts.prefix,
        opts.shard_tokens,
        val_count,
    )?;
    Ok(TokenizeReport {
        documents,
        input_bytes,
        val_tokens: val_count,
        train_tokens: tokens.len() - val_count,
        files,
    })
}
