//! The modded-nanogpt / llm.c token shard format (docs/data.md, "Shard format"): a 1024-byte header of 256 little-endian i32 `[20240520, 1, num_tokens, 0, …]`, then
//! `num_tokens` little-endian u16 GPT-2 ids. Reads are memory-mapped; writes are atomic.
use anyhow::{bail, Context, Result};
use memmap2::Mmap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// llm.c's `write_datafile` magic (the date the format was fixed, 2024-05-20).
pub const MAGIC: i32 = 20240520;
/// Format version 1 = u16 GPT-2 tokens (llm.c uses 2 for u32 Llama-3 tokens, which we do not read).
pub const VERSION: i32 = 1;
/// 256 i32 header words.
pub const HEADER_BYTES: usize = 1024;

/// Parse and check a header against the file's real size; returns `num_tokens`.
/// `what` names the file in every error message.
fn parse_header(header: &[u8], file_len: u64, what: &Path) -> Result<usize> {
    if header.len() < HEADER_BYTES || file_len < HEADER_BYTES as u64 {
        bail!(
            "{}: truncated shard: {} bytes, shorter than the {HEADER_BYTES}-byte header",
            what.display(),
            file_len
        );
    }
    let word = |i: usize| i32::from_le_bytes(header[4 * i..4 * i + 4].try_into().unwrap());
    if word(0) != MAGIC {
        bail!(
            "{}: not a token shard: magic {} (expected {MAGIC})",
            what.display(),
            word(0)
        );
    }
    if word(1) != VERSION {
        bail!(
            "{}: unsupported shard version {} (expected {VERSION}, u16 tokens)",
            what.display(),
            word(1)
        );
    }
    let n = word(2);
    if n < 0 {
        bail!("{}: negative token count {n} in header", what.display());
    }
    let expected = HEADER_BYTES as u64 + 2 * n as u64;
    if expected != file_len {
        bail!(
            "{}: header says {n} tokens ({expected} bytes) but the file has {file_len} bytes",
            what.display()
        );
    }
    Ok(n as usize)
}

/// Read only the header of `path` and check it against the file size; returns the token count.
pub fn read_header(path: &Path) -> Result<usize> {
    let mut f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let len = f
        .metadata()
        .with_context(|| format!("{}: cannot stat", path.display()))?
        .len();
    let mut header = vec![0u8; HEADER_BYTES.min(len as usize)];
    f.read_exact(&mut header)
        .with_context(|| format!("{}: cannot read header", path.display()))?;
    parse_header(&header, len, path)
}

/// A memory-mapped, validated shard.
pub struct Shard {
    path: PathBuf,
    mmap: Mmap,
    len: usize,
}

impl Shard {
    /// Map `path` and validate its header (magic, version, count vs size).
    pub fn open(path: &Path) -> Result<Self> {
        let f = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        let file_len = f
            .metadata()
            .with_context(|| format!("{}: cannot stat", path.display()))?
            .len();
        if file_len < HEADER_BYTES as u64 {
            // Checked before mapping: an empty file cannot be mapped on every platform.
            parse_header(&[], file_len, path)?;
        }
        // SAFETY: shards are treated as read-only inputs; a concurrent writer would be a user error
        // (our own writer replaces files atomically by rename, which leaves this mapping intact).
        let mmap =
            unsafe { Mmap::map(&f) }.with_context(|| format!("{}: cannot mmap", path.display()))?;
        let len = parse_header(&mmap[..HEADER_BYTES], file_len, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            len,
        })
    }

    /// Number of tokens in the shard.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens `[start, start + n)` widened to u32. Panics if out of range (callers check bounds).
    pub fn slice_u32(&self, start: usize, n: usize) -> Vec<u32> {
        let bytes = &self.mmap[HEADER_BYTES + 2 * start..HEADER_BYTES + 2 * (start + n)];
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
            .collect()
    }

    /// All tokens as u16.
    pub fn to_vec(&self) -> Vec<u16> {
        self.mmap[HEADER_BYTES..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    /// Error on the first token id `>= vocab_size` (its position and value), e.g. a shard written
    /// for another tokenizer; an out-of-range id would otherwise index past the embedding. The
    /// vectorised [`Shard::min_max`] decides; the position is looked for only on an error.
    pub fn check_vocab(&self, vocab_size: usize) -> Result<()> {
        match self.min_max() {
            Some((_, hi)) if hi as usize >= vocab_size => {}
            _ => return Ok(()),
        }
        let bytes = &self.mmap[HEADER_BYTES..];
        if let Some((i, v)) = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as usize)
            .enumerate()
            .find(|&(_, v)| v >= vocab_size)
        {
            bail!(
                "{}: token id {v} at position {i} is >= the vocabulary size {vocab_size}",
                self.path.display()
            );
        }
        Ok(())
    }

    /// (min, max) token id, or None for an empty shard: a range pass over the mapped tokens in
    /// parallel blocks, which the compiler vectorises (measured in docs/perf.md, "Token-id
    /// scan at open").
    pub fn min_max(&self) -> Option<(u16, u16)> {
        min_max_le_u16(&self.mmap[HEADER_BYTES..])
    }
}

/// Tokens per block of the parallel range pass (2 MB of u16).
const SCAN_BLOCK: usize = 1 << 20;

/// (min, max) of little-endian u16 values in `bytes`, or None when there are none.
fn min_max_le_u16(bytes: &[u8]) -> Option<(u16, u16)> {
    use rayon::prelude::*;
    let join = |a: Option<(u16, u16)>, b: Option<(u16, u16)>| match (a, b) {
        (Some((l1, h1)), Some((l2, h2))) => Some((l1.min(l2), h1.max(h2))),
        (x, None) | (None, x) => x,
    };
    #[cfg(target_endian = "little")]
    {
        // SAFETY: every bit pattern is a valid u16; align_to leaves any unaligned ends out of
        // `mid` (a shard's tokens start at byte 1024 of a page-aligned map, so there are none).
        let (pre, mid, post) = unsafe { bytes.align_to::<u16>() };
        if pre.is_empty() && post.is_empty() {
            return mid
                .par_chunks(SCAN_BLOCK)
                .map(|c| {
                    let lo = c.iter().copied().fold(u16::MAX, u16::min);
                    let hi = c.iter().copied().fold(0, u16::max);
                    Some((lo, hi))
                })
                .reduce(|| None, join);
        }
    }
    bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .fold(None, |acc, v| join(acc, Some((v, v))))
}

/// Check every token id of every shard in `files` against `vocab_size`, so that a bad id in a
/// later shard is found when the data is opened, before a run directory exists, rather than
/// when training reaches that shard.
pub fn check_vocab_all(files: &[PathBuf], vocab_size: usize) -> Result<()> {
    if vocab_size > u16::MAX as usize {
        return Ok(());
    }
    for f in files {
        Shard::open(f)?.check_vocab(vocab_size)?;
    }
    Ok(())
}

/// Serialize a shard (header + tokens) to bytes.
pub fn shard_bytes(tokens: &[u16]) -> Result<Vec<u8>> {
    let n = i32::try_from(tokens.len())
        .map_err(|_| anyhow::anyhow!("{} tokens do not fit an i32 header", tokens.len()))?;
    let mut out = Vec::with_capacity(HEADER_BYTES + 2 * tokens.len());
    let mut header = [0i32; HEADER_BYTES / 4];
    header[0] = MAGIC;
    header[1] = VERSION;
    header[2] = n;
    for w in header {
        out.extend_from_slice(&w.to_le_bytes());
    }
    for t in tokens {
        out.extend_from_slice(&t.to_le_bytes());
    }
    Ok(out)
}

/// Write `tokens` to `path` atomically ([`crate::fsutil::write_atomic`]). A crash never leaves a
/// half-written shard under the final name (the loader would otherwise reject or misread it).
pub fn write_shard(path: &Path, tokens: &[u16]) -> Result<()> {
    let bytes = shard_bytes(tokens).with_context(|| format!("{}", path.display()))?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// Read a whole shard into memory.
pub fn read_shard(path: &Path) -> Result<Vec<u16>> {
    Ok(Shard::open(path)?.to_vec())
}

/// Resolve a shard pattern: a directory (every `*.bin` directly in it), a single file, or a glob.
/// Returns the files sorted by path (= filename order within one directory), never empty.
pub fn resolve_pattern(pattern: &str) -> Result<Vec<PathBuf>> {
    let p = Path::new(pattern);
    let mut files: Vec<PathBuf> = if p.is_dir() {
        let rd =
            std::fs::read_dir(p).with_context(|| format!("{pattern}: cannot read directory"))?;
        let mut v = Vec::new();
        for e in rd {
            let e = e.with_context(|| format!("{pattern}: cannot read directory"))?;
            let path = e.path();
            if path.is_file() && path.extension().is_some_and(|x| x == "bin") {
                v.push(path);
            }
        }
        if v.is_empty() {
            bail!("{pattern}: directory contains no *.bin shards");
        }
        v
    } else if p.is_file() {
        vec![p.to_path_buf()]
    } else {
        let paths = glob::glob(pattern).with_context(|| format!("{pattern}: invalid glob"))?;
        let mut v = Vec::new();
        for e in paths {
            let path = e.with_context(|| format!("{pattern}: cannot read a glob match"))?;
            if path.is_file() {
                v.push(path);
            }
        }
        if v.is_empty() {
            bail!("{pattern}: no shard files match (not a directory, file or matching glob)");
        }
        v
    };
    files.sort();
    Ok(files)
}
