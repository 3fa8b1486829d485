//! Hub downloads (`speedrun data fetch`) through hf-hub's sync (ureq) API.
//!
//! hf-hub 0.4.3 asks `GET {endpoint}/datasets/{repo}/resolve/main/{file}` with `Range: bytes=0-0`
//! for metadata (it needs `etag` or `x-linked-etag`, `x-repo-commit` and `Content-Range: bytes
//! 0-0/SIZE`), then `GET` the same URL with `Range: bytes=START-` into `<cache>/blobs/<etag>.part`
//! (resumed on a later call), renames it to the blob and links `snapshots/<commit>/<file>` to it.
//! We point its cache at `<out>/.hf-cache` and move each finished blob to `<out>/<file>`, so the
//! output directory holds plain files and a file already there (and valid) is never re-requested.
use super::shard::read_header;
use super::tokenize::{encode_files, load_tokenizer, write_split, DocSplit, DEFAULT_SHARD_TOKENS};
use anyhow::{bail, Context, Result};
use hf_hub::api::sync::{ApiBuilder, ApiError};
use std::path::{Path, PathBuf};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
pub const FINEWEB_REPO: &str = "kjj0/fineweb10B-gpt2";
/// 100,000,000 u16 tokens + the 1024-byte header (docs/data.md, "FineWeb10B").
pub const FINEWEB_TRAIN_BYTES: u64 = 200_001_024;
pub const FINEWEB_MAX_TRAIN_SHARDS: usize = 103;
pub const TINYSTORIES_REPO: &str = "roneneldan/TinyStories";
pub const TINYSTORIES_FILES: [&str; 2] = [
    "TinyStoriesV2-GPT4-valid.txt",
    "TinyStoriesV2-GPT4-train.txt",
];

#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// `None`: `$HF_ENDPOINT`, else https://huggingface.co.
    pub endpoint: Option<String>,
    pub out: PathBuf,
    pub progress: bool,
}

impl FetchConfig {
    pub fn endpoint(&self) -> String {
        let e = self
            .endpoint
            .clone()
            .or_else(|| std::env::var("HF_ENDPOINT").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        e.trim_end_matches('/').to_string()
    }
}

/// What a complete file looks like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expect {
    /// A token shard whose header agrees with its size, optionally of an exact byte size.
    Shard { exact_bytes: Option<u64> },
    /// Any non-empty file (text corpora: the hub's size is checked by hf-hub's own download).
    NonEmpty,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    pub name: String,
    pub expect: Expect,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Downloaded(PathBuf),
    Skipped(PathBuf),
}

/// Check a local file against its expectation; the error names the file.
pub fn check_file(path: &Path, expect: Expect) -> Result<()> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot stat", path.display()))?
        .len();
    match expect {
        Expect::NonEmpty => {
            if size == 0 {
                bail!("{}: file is empty", path.display());
            }
        }
        Expect::Shard { exact_bytes } => {
            if let Some(b) = exact_bytes {
                if size != b {
                    bail!("{}: {size} bytes, expected {b}", path.display());
                }
            }
            read_header(path)?;
        }
    }
    Ok(())
}

/// The FineWeb10B files: the val shard and train shards 1..=n.
pub fn fineweb_specs(train_shards: usize) -> Result<Vec<FileSpec>> {
    if train_shards == 0 || train_shards > FINEWEB_MAX_TRAIN_SHARDS {
        bail!("--train-shards must be in 1..={FINEWEB_MAX_TRAIN_SHARDS}, got {train_shards}");
    }
    let mut v = vec![FileSpec {
        name: "fineweb_val_000000.bin".into(),
        // The val shard's size is not fixed by the dataset layout: check the header against the size.
        expect: Expect::Shard { exact_bytes: None },
    }];
    v.extend((1..=train_shards).map(|i| FileSpec {
        name: format!("fineweb_train_{i:06}.bin"),
        expect: Expect::Shard {
            exact_bytes: Some(FINEWEB_TRAIN_BYTES),
        },
    }));
    Ok(v)
}

/// A one-line, actionable message for an hf-hub failure.
fn explain(err: ApiError, endpoint: &str, repo: &str, file: &str) -> anyhow::Error {
    let url = format!("{endpoint}/datasets/{repo}/resolve/main/{file}");
    let hint = match &err {
        // ureq 2 formats a status error as "<url>: status code <n>" (its Display); we read the
        // code from that rather than depend on ureq directly.
        ApiError::RequestError(e) => {
            let msg = e.to_string();
            let code = msg
                .rsplit_once("status code ")
                .and_then(|(_, c)| c.split_whitespace().next()?.parse::<u16>().ok());
            match code {
                Some(401 | 403) => {
                    "access denied: set HF_TOKEN to a Hugging Face token with access to the dataset"
                }
                Some(404) => "not found: check the repository/file name, or that the mirror in HF_ENDPOINT / --endpoint carries it",
                Some(_) => "server error: retry later or use a mirror (HF_ENDPOINT / --endpoint)",
                None => "cannot reach the hub: check the network/proxy, or set HF_ENDPOINT / --endpoint to a mirror (e.g. https://hf-mirror.com)",
            }
        }
        ApiError::MissingHeader(_) | ApiError::InvalidHeader(_) => {
            "the server is not a Hugging Face hub (missing hub headers): check HF_ENDPOINT / --endpoint"
        }
        ApiError::LockAcquisition(_) => "another download of this file is running",
        _ => "retry; a partial download in <out>/.hf-cache is resumed",
    };
    match err {
        // ureq's message already carries the URL.
        ApiError::RequestError(_) => anyhow::anyhow!("{file}: {err}; {hint}"),
        _ => anyhow::anyhow!("{url}: {err}; {hint}"),
    }
}

/// Download `files` of the dataset `repo` into `cfg.out`, skipping files already complete.
pub fn fetch_dataset_files(
    cfg: &FetchConfig,
    repo: &str,
    files: &[FileSpec],
) -> Result<Vec<Outcome>> {
    let out = &cfg.out;
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create output directory", out.display()))?;
    let endpoint = cfg.endpoint();
    let cache = out.join(".hf-cache");
    let token = std::env::var("HF_TOKEN").ok().filter(|s| !s.is_empty());
    let api = ApiBuilder::new()
        .with_endpoint(endpoint.clone())
        .with_cache_dir(cache.clone())
        .with_token(token)
        .with_progress(cfg.progress)
        .with_retries(3)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the hub client: {e}"))?;
    let api = api.dataset(repo.to_string());
    let mut outcomes = Vec::new();
    for spec in files {
        let target = out.join(&spec.name);
        if target.exists() {
            match check_file(&target, spec.expect) {
                Ok(()) => {
                    if cfg.progress {
                        eprintln!("{}: already complete, skipped", target.display());
                    }
                    outcomes.push(Outcome::Skipped(target));
                    continue;
                }
                Err(e) => {
                    eprintln!("{e:#}; downloading it again");
                    std::fs::remove_file(&target)
                        .with_context(|| format!("{}: cannot remove", target.display()))?;
                }
            }
        }
        let link = api
            .download(&spec.name)
            .map_err(|e| explain(e, &endpoint, repo, &spec.name))?;
        // The snapshot entry is a symlink to the blob: move the blob itself.
        let blob = std::fs::canonicalize(&link)
            .with_context(|| format!("{}: cannot resolve the downloaded file", link.display()))?;
        if let Err(e) = check_file(&blob, spec.expect) {
            // Drop the bad blob so that a retry downloads afresh instead of trusting it.
            let _ = std::fs::remove_file(&blob);
            let _ = std::fs::remove_file(&link);
            bail!(
                "{endpoint}/datasets/{repo}/resolve/main/{} served a bad file: {e:#}; retry, or try another mirror (HF_ENDPOINT / --endpoint)",
                spec.name
            );
        }
        std::fs::rename(&blob, &target).with_context(|| {
            format!(
                "{}: cannot move the download from {}",
                target.display(),
                blob.display()
            )
        })?;
        let _ = std::fs::remove_file(&link);
        outcomes.push(Outcome::Downloaded(target));
    }
    // Every file is in place; the cache only held links to moved blobs.
    let _ = std::fs::remove_dir_all(&cache);
    Ok(outcomes)
}

/// `speedrun data fetch fineweb10B --train-shards N`.
pub fn fetch_fineweb(cfg: &FetchConfig, train_shards: usize) -> Result<Vec<Outcome>> {
    fetch_dataset_files(cfg, FINEWEB_REPO, &fineweb_specs(train_shards)?)
}

/// `speedrun data fetch tinystories`: download TinyStoriesV2-GPT4 {valid,train}.txt, then tokenize
/// them (documents split on "<|endoftext|>", EOT before each) into `tinystories_val_000000.bin`
/// (all of valid) and `tinystories_train_000001.bin`… (train, 100M tokens per shard).
/// Returns the download outcomes and the shard files.
pub fn fetch_tinystories(
    cfg: &FetchConfig,
    repo: &str,
    shard_tokens: Option<usize>,
) -> Result<(Vec<Outcome>, Vec<PathBuf>)> {
    let specs: Vec<FileSpec> = TINYSTORIES_FILES
        .iter()
        .map(|n| FileSpec {
            name: n.to_string(),
            expect: Expect::NonEmpty,
        })
        .collect();
    let outcomes = fetch_dataset_files(cfg, repo, &specs)?;
    let val = cfg.out.join("tinystories_val_000000.bin");
    let train = cfg.out.join("tinystories_train_000001.bin");
    let all_skipped = outcomes.iter().all(|o| matches!(o, Outcome::Skipped(_)));
    if all_skipped && read_header(&val).is_ok() && read_header(&train).is_ok() {
        if cfg.progress {
            eprintln!(
                "{}: shards already present, not re-tokenized",
                cfg.out.display()
            );
        }
        return Ok((outcomes, vec![val, train]));
    }
    let tok = load_tokenizer(None)?;
    let split = DocSplit::Separator("<|endoftext|>".into());
    let (mut tokens, _, _) = encode_files(
        &tok,
        &[cfg.out.join(TINYSTORIES_FILES[0])],
        &split,
        cfg.progress,
    )?;
    let val_count = tokens.len();
    let (train_tokens, _, _) = encode_files(
        &tok,
        &[cfg.out.join(TINYSTORIES_FILES[1])],
        &split,
        cfg.progress,
    )?;
    tokens.extend(train_tokens);
    let files = write_split(
        &tokens,
        &cfg.out,
        "tinystories",
        shard_tokens.unwrap_or(DEFAULT_SHARD_TOKENS),
        val_count,
    )?;
    Ok((outcomes, files))
}
