//! Tokenizer pipeline against golden numbers from `scripts/data_reference.py` (tiktoken
//! `encode_ordinary`, independent of the Rust tokenizers crate). Its output, pasted:
//!
//! ```text
//! literal: 'a<|endoftext|>b' [64, 27, 91, 437, 1659, 5239, 91, 29, 65]
//! gutenberg_42: documents 42 tokens 1566000
//! tinyshakespeare: val 32768 fe99db720dc7c83e694806d4e047a952909411da1daccde4ccc2e55f40882a62
//! tinyshakespeare: train 305260 8a70606be574040c26d225694f5f9759973b419852d22f7fe5c118e1b359dcc8
//! jsonl: [50256, 15496, 995, 50256, 383, 886, 13, 198]
//! tinystories fixture val: [50256, 3198, 1110, 13, 50256, 464, 886, 13]
//! tinystories: documents 4300 tokens 190329 val 19033
//! tinystories: val sha256 aa6bc8f64dd3d7f8660d1b0252bf3abce32f8e5f58458e7b5006acae0482bb14
//! tinystories: train sha256 de3bb5b9ba4e28bb6914d13f37293c665fdd27ee9021637f3f1475b92aff041d
//! ```
use crate::data::tokenize::*;
use crate::data::*;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn sha256(p: &Path) -> String {
    let bytes = std::fs::read(p).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn opts(inputs: Vec<PathBuf>, out: &Path, split: DocSplit, val: ValSplit) -> TokenizeOptions {
    TokenizeOptions {
        inputs,
        out_dir: out.to_path_buf(),
        prefix: "t".into(),
        shard_tokens: DEFAULT_SHARD_TOKENS,
        val,
        split,
        tokenizer: None,
        progress: false,
    }
}

#[test]
fn llm_c_shakespeare_recipe_is_byte_identical_to_golden_shards() {
    let dir = tempfile::tempdir().unwrap();
    let o = TokenizeOptions::llm_c_shakespeare(
        vec![repo("data/corpus/tinyshakespeare.txt")],
        dir.path().to_path_buf(),
        "tinyshakespeare",
    );
    let r = tokenize(&o).unwrap();
    assert_eq!((r.val_tokens, r.train_tokens), (32_768, 305_260));
    for f in [
        "tinyshakespeare_val_000000.bin",
        "tinyshakespeare_train_000001.bin",
    ] {
        let ours = std::fs::read(dir.path().join(f)).unwrap();
        let golden = std::fs::read(repo("data/tinyshakespeare").join(f)).unwrap();
        assert!(ours == golden, "{f} differs from the llm.c golden shard");
    }
    assert_eq!(
        sha256(&dir.path().join("tinyshakespeare_val_000000.bin")),
        "fe99db720dc7c83e694806d4e047a952909411da1daccde4ccc2e55f40882a62"
    );
    assert_eq!(r.files.len(), 2);
}

#[test]
fn literal_endoftext_in_text_is_ordinary_text() {
    let tok = load_tokenizer(None).unwrap();
    let docs = vec!["a<|endoftext|>b".to_string()];
    let ids = encode_documents(&tok, &docs, &indicatif::ProgressBar::hidden()).unwrap();
    // Only the leading EOT is 50256; the literal is encode_ordinary's 8 plain-text pieces.
    assert_eq!(ids, vec![50256, 64, 27, 91, 437, 1659, 5239, 91, 29, 65]);
}

#[test]
fn jsonl_and_gzip_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let jsonl = "{\"text\": \"Hello world\", \"id\": 1}\n\n{\"text\": \" The end.\\n\"}\n";
    std::fs::write(d.join("a.jsonl"), jsonl).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(jsonl.as_bytes()).unwrap();
    std::fs::write(d.join("b.jsonl.gz"), gz.finish().unwrap()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"Hello world<|endoftext|>  The end.\n")
        .unwrap();
    std::fs::write(d.join("c.txt.gz"), gz.finish().unwrap()).unwrap();
    let want: Vec<u16> = vec![50256, 15496, 995, 50256, 383, 886, 13, 198];
    for f in ["a.jsonl", "b.jsonl.gz"] {
        let out = d.join(format!("out_{f}"));
        let sep = DocSplit::Separator("<|endoftext|>".into());
        let r = tokenize(&opts(vec![d.join(f)], &out, sep, ValSplit::Tokens(3))).unwrap();
        assert_eq!(r.documents, 2);
        let val = read_shard(&out.join("t_val_000000.bin")).unwrap();
        let train = read_shard(&out.join("t_train_000001.bin")).unwrap();
        assert_eq!([val, train].concat(), want, "{f}");
    }
    // .txt.gz split on the separator: documents are trimmed ("The end." loses its space and \n).
    let out = d.join("out_c");
    let sep = DocSplit::Separator("<|endoftext|>".into());
    tokenize(&opts(
        vec![d.join("c.txt.gz")],
        &out,
        sep,
        ValSplit::Tokens(0),
    ))
    .unwrap();
    let got = read_shard(&out.join("t_train_000000.bin")).unwrap();
    let tok = load_tokenizer(None).unwrap();
    let the_end = tok.encode("The end.", false).unwrap().get_ids().to_vec();
    let mut want2 = vec![50256u16, 15496, 995, 50256];
    want2.extend(the_end.iter().map(|&x| x as u16));
    assert_eq!(got, want2);
    // A bad jsonl line names the file and line.
    std::fs::write(d.join("bad.jsonl"), "{\"text\": \"ok\"}\n{\"txt\": 1}\n").unwrap();
    let e = tokenize(&opts(
        vec![d.join("bad.jsonl")],
        &d.join("o"),
        DocSplit::PerFile,
        ValSplit::Tokens(0),
    ))
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("bad.jsonl: line 2") && e.contains("text"), "{e}");
}

#[test]
fn gutenberg_42_documents_give_1566000_tokens_and_shards_split() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(
        vec![repo("data/corpus/shakespeare_gutenberg_42.txt")],
        dir.path(),
        DocSplit::Separator("<|endoftext|>".into()),
        ValSplit::Fraction(0.1),
    );
    o.shard_tokens = 500_000;
    let r = tokenize(&o).unwrap();
    assert_eq!(r.documents, 42);
    assert_eq!(r.val_tokens + r.train_tokens, 1_566_000);
    assert_eq!(r.val_tokens, 156_600);
    // 156,600 val tokens in one shard, then 1,409,400 train tokens in shards of ≤ 500,000
    // numbered on from the val shard.
    let names: Vec<String> = r
        .files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "t_val_000000.bin",
            "t_train_000001.bin",
            "t_train_000002.bin",
            "t_train_000003.bin"
        ]
    );
    let lens: Vec<usize> = r.files.iter().map(|p| read_header(p).unwrap()).collect();
    assert_eq!(lens, [156_600, 500_000, 500_000, 409_400]);
    // Every document starts with EOT: exactly 42 EOTs in the stream, the first at position 0.
    let all: Vec<u16> = r
        .files
        .iter()
        .flat_map(|p| read_shard(p).unwrap())
        .collect();
    assert_eq!(all[0], 50256);
    assert_eq!(all.iter().filter(|&&x| x == 50256).count(), 42);
}

#[test]
fn shipped_tinystories_shards_match_reference() {
    let dir = repo("data/tinystories");
    assert_eq!(
        sha256(&dir.join("tinystories_val_000000.bin")),
        "aa6bc8f64dd3d7f8660d1b0252bf3abce32f8e5f58458e7b5006acae0482bb14"
    );
    assert_eq!(
        sha256(&dir.join("tinystories_train_000001.bin")),
        "de3bb5b9ba4e28bb6914d13f37293c665fdd27ee9021637f3f1475b92aff041d"
    );
    assert_eq!(
        read_header(&dir.join("tinystories_val_000000.bin")).unwrap(),
        19_033
    );
}
