//! `fetch` against a loopback HTTP server that speaks the hub's file protocol as hf-hub 0.4.3
//! uses it (see fetch.rs): `GET /datasets/<repo>/resolve/main/<file>` with a `Range` header,
//! answered 206 with `Content-Range`, `ETag` and `X-Repo-Commit`. The real hf-hub client runs;
//! nothing leaves 127.0.0.1.
use crate::data::fetch::*;
use crate::data::shard::shard_bytes;
use crate::data::*;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

type Files = Arc<Mutex<HashMap<String, Vec<u8>>>>;
type Hits = Arc<Mutex<HashMap<String, usize>>>;

struct Hub {
    endpoint: String,
    files: Files,
    hits: Hits,
}

impl Hub {
    fn start() -> Hub {
        // ureq (inside hf-hub) sends every request through $HTTP(S)_PROXY / $ALL_PROXY when set
        // and ignores NO_PROXY, which would route 127.0.0.1 to a proxy. No other test reads
        // these variables, so clearing them process-wide is harmless.
        for v in [
            "ALL_PROXY",
            "all_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
        ] {
            std::env::remove_var(v);
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let files: Files = Default::default();
        let hits: Hits = Default::default();
        let (f, h) = (files.clone(), hits.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (f, h) = (f.clone(), h.clone());
                std::thread::spawn(move || serve(conn, &f, &h));
            }
        });
        Hub {
            endpoint,
            files,
            hits,
        }
    }

    fn put(&self, repo: &str, name: &str, bytes: Vec<u8>) {
        let path = format!("/datasets/{repo}/resolve/main/{name}");
        self.files.lock().unwrap().insert(path, bytes);
    }

    fn hits(&self, name: &str) -> usize {
        let h = self.hits.lock().unwrap();
        h.iter()
            .filter(|(k, _)| k.ends_with(&format!("/{name}")))
            .map(|(_, v)| v)
            .sum()
    }
}

/// One request per connection (`Connection: close`), enough for ureq.
fn serve(conn: TcpStream, files: &Files, hits: &Hits) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let mut conn = conn;
    let body = files.lock().unwrap().get(&path).cloned();
    let Some(body) = body else {
        let _ = write!(
            conn,
            "HTTP/1.1 404 Not Found\r\nX-Error-Code: EntryNotFound\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    };
    let total = body.len();
    // "bytes=START-" or "bytes=START-END" (inclusive), as hf-hub sends.
    let (start, end) = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| {
            let a: usize = a.parse().unwrap_or(0);
            let b: usize = b.parse().map(|b: usize| b + 1).unwrap_or(total);
            (a.min(total), b.min(total))
        })
        .unwrap_or((0, total));
    let etag: String = Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let _ = write!(
        conn,
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {}-{}/{}\r\nETag: \"{etag}\"\r\nX-Repo-Commit: 0123456789abcdef0123456789abcdef01234567\r\nConnection: close\r\n\r\n",
        end - start,
        start,
        end.saturating_sub(1),
        total
    );
    let _ = conn.write_all(&body[start..end]);
}

fn small_shard(seed: u16, n: usize) -> Vec<u8> {
    let toks: Vec<u16> = (0..n as u16)
        .map(|i| i.wrapping_mul(31).wrapping_add(seed) % 50_000)
        .collect();
    shard_bytes(&toks).unwrap()
}

fn cfg(hub: &Hub, out: &std::path::Path) -> FetchConfig {
    FetchConfig {
        endpoint: Some(hub.endpoint.clone()),
        out: out.to_path_buf(),
        progress: false,
    }
}

fn relaxed(specs: Vec<FileSpec>) -> Vec<FileSpec> {
    specs
        .into_iter()
        .map(|s| FileSpec {
            expect: Expect::Shard { exact_bytes: None },
            ..s
        })
        .collect()
}

#[test]
fn fetch_downloads_skips_and_redownloads_a_damaged_file() {
    let hub = Hub::start();
    let names = [
        "fineweb_val_000000.bin",
        "fineweb_train_000001.bin",
        "fineweb_train_000002.bin",
    ];
    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|i| small_shard(i, 100 + 7 * i as usize))
        .collect();
    for (n, b) in names.iter().zip(&bodies) {
        hub.put(FINEWEB_REPO, n, b.clone());
    }
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(&hub, dir.path());
    // The real FineWeb file list, with the 200,001,024-byte check relaxed for tiny shards.
    let specs = relaxed(fineweb_specs(2).unwrap());
    let got = fetch_dataset_files(&c, FINEWEB_REPO, &specs).unwrap();
    assert!(
        got.iter().all(|o| matches!(o, Outcome::Downloaded(_))),
        "{got:?}"
    );
    for (n, b) in names.iter().zip(&bodies) {
        assert_eq!(&std::fs::read(dir.path().join(n)).unwrap(), b, "{n}");
        // hf-hub: one metadata GET (Range 0-0) and one download GET.
        assert_eq!(hub.hits(n), 2, "{n}");
    }
    assert!(!dir.path().join(".hf-cache").exists());
    // The downloaded directory is a valid loader input.
    let pat = format!("{}/fineweb_train_*.bin", dir.path().display());
    assert_eq!(
        Loader::new(&pat, 2, 8, 2, GPT2_VOCAB)
            .unwrap()
            .files()
            .len(),
        2
    );

    // Second fetch: everything is complete, so nothing is requested.
    let got = fetch_dataset_files(&c, FINEWEB_REPO, &specs).unwrap();
    assert!(
        got.iter().all(|o| matches!(o, Outcome::Skipped(_))),
        "{got:?}"
    );
    assert_eq!(hub.hits(names[1]), 2);

    // A truncated local copy is detected and fetched again; the others stay skipped.
    let p = dir.path().join(names[1]);
    std::fs::write(&p, &bodies[1][..bodies[1].len() - 10]).unwrap();
    let got = fetch_dataset_files(&c, FINEWEB_REPO, &specs).unwrap();
    assert_eq!(got[1], Outcome::Downloaded(p.clone()));
    assert!(matches!(got[0], Outcome::Skipped(_)) && matches!(got[2], Outcome::Skipped(_)));
    assert_eq!(std::fs::read(&p).unwrap(), bodies[1]);
    assert_eq!(hub.hits(names[1]), 4);
}

#[test]
fn fetch_reports_wrong_size_bad_header_missing_file_and_no_server() {
    let hub = Hub::start();
    hub.put(FINEWEB_REPO, "fineweb_val_000000.bin", small_shard(1, 50));
    // A real-path FineWeb train shard must be exactly 200,001,024 bytes.
    hub.put(FINEWEB_REPO, "fineweb_train_000001.bin", small_shard(2, 60));
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(&hub, dir.path());
    let e = format!("{:#}", fetch_fineweb(&c, 1).unwrap_err());
    assert!(
        e.contains("fineweb_train_000001.bin") && e.contains("expected 200001024"),
        "{e}"
    );
    assert!(!dir.path().join("fineweb_train_000001.bin").exists());

    // A served shard whose header disagrees with its size.
    let mut bad = small_shard(3, 40);
    bad.truncate(bad.len() - 2);
    hub.put("me/bad", "x_000000.bin", bad);
    let spec = [FileSpec {
        name: "x_000000.bin".into(),
        expect: Expect::Shard { exact_bytes: None },
    }];
    let e = format!(
        "{:#}",
        fetch_dataset_files(&c, "me/bad", &spec).unwrap_err()
    );
    assert!(
        e.contains("x_000000.bin") && e.contains("header says 40 tokens"),
        "{e}"
    );
    assert!(!dir.path().join("x_000000.bin").exists());
    // Once the server is fixed, the same call succeeds.
    hub.put("me/bad", "x_000000.bin", small_shard(3, 40));
    let got = fetch_dataset_files(&c, "me/bad", &spec).unwrap();
    assert!(matches!(got[0], Outcome::Downloaded(_)));
    assert_eq!(read_header(&dir.path().join("x_000000.bin")).unwrap(), 40);

    // A file the hub does not have.
    let spec = [FileSpec {
        name: "absent.bin".into(),
        expect: Expect::NonEmpty,
    }];
    let e = format!(
        "{:#}",
        fetch_dataset_files(&c, "me/bad", &spec).unwrap_err()
    );
    assert!(
        e.contains("absent.bin") && e.contains("404") && e.contains("HF_ENDPOINT"),
        "{e}"
    );

    // Nothing listening: the hint is about the network or a mirror.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let c = FetchConfig {
        endpoint: Some(endpoint),
        ..c
    };
    let e = format!(
        "{:#}",
        fetch_dataset_files(&c, "me/bad", &spec).unwrap_err()
    );
    assert!(
        e.contains("cannot reach the hub") && !e.contains('\n'),
        "{e}"
    );
}

#[test]
fn fetch_tinystories_downloads_text_and_tokenizes() {
    let hub = Hub::start();
    let valid = "One day.\n<|endoftext|>\nThe end.\n<|endoftext|>\n";
    let train = "Spot ran.\n<|endoftext|>\nSpot saw a car.\n<|endoftext|>\nHi.\n";
    hub.put(
        TINYSTORIES_REPO,
        TINYSTORIES_FILES[0],
        valid.as_bytes().to_vec(),
    );
    hub.put(
        TINYSTORIES_REPO,
        TINYSTORIES_FILES[1],
        train.as_bytes().to_vec(),
    );
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(&hub, dir.path());
    let (o, files) = fetch_tinystories(&c, TINYSTORIES_REPO, Some(8)).unwrap();
    assert!(o.iter().all(|x| matches!(x, Outcome::Downloaded(_))));
    let val = read_shard(&files[0]).unwrap();
    // Golden from scripts/data_reference.py ("tinystories fixture val", pasted in
    // tests/tokenize.rs); the valid file alone forms the val shard.
    assert_eq!(val, vec![50256, 3198, 1110, 13, 50256, 464, 886, 13]);
    let train_toks: Vec<u16> = files[1..]
        .iter()
        .flat_map(|p| read_shard(p).unwrap())
        .collect();
    assert_eq!(train_toks.iter().filter(|&&x| x == 50256).count(), 3);
    assert!(files[1].ends_with("tinystories_train_000001.bin"));
    // Again: downloads and tokenization are skipped.
    let (o, _) = fetch_tinystories(&c, TINYSTORIES_REPO, Some(8)).unwrap();
    assert!(o.iter().all(|x| matches!(x, Outcome::Skipped(_))));
    assert_eq!(hub.hits(TINYSTORIES_FILES[0]), 2);
}

#[test]
fn endpoint_precedence_flag_then_env_then_default() {
    let mut c = FetchConfig {
        endpoint: None,
        out: "unused".into(),
        progress: false,
    };
    // Only this test touches HF_ENDPOINT (the other fetch tests pass an explicit endpoint).
    std::env::set_var("HF_ENDPOINT", "http://mirror.example/");
    assert_eq!(c.endpoint(), "http://mirror.example");
    std::env::remove_var("HF_ENDPOINT");
    assert_eq!(c.endpoint(), DEFAULT_ENDPOINT);
    c.endpoint = Some("http://flag.example".into());
    assert_eq!(c.endpoint(), "http://flag.example");
}
