//! `speedrun export tensorboard`: each run's scalars as a TensorBoard event file, one
//! subdirectory per run (`tensorboard --logdir DIR` shows them as runs).
//!
//! An event file is a TFRecord stream (tensorflow/tsl `lib/io/record_writer.cc`): per record the
//! length as u64 LE, its masked CRC-32C, the bytes, their masked CRC-32C. Each record is an
//! `Event` protobuf (tensorboard `compat/proto/event.proto`): first one with `file_version`
//! "brain.Event:2", then one per step whose `Summary` holds every scalar of that step as a
//! `simple_value`. prost encodes the messages (the three below, with the proto's field numbers)
//! and the `crc` crate computes CRC-32C.
use super::record::{RunRecord, Source};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `tensorboard.Event`, with the fields a scalar file uses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorboard.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorboard.Summary.Value`: a tag and, in its `value` oneof, a `simple_value` (a oneof, so
/// that a 0.0 is written rather than dropped as a proto3 default).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(oneof = "ScalarValue", tags = "2")]
    pub value: Option<ScalarValue>,
}

#[derive(Clone, Copy, PartialEq, prost::Oneof)]
pub enum ScalarValue {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
}

/// TFRecord's masked CRC-32C: the CRC rotated right by 15 bits plus a constant, so that a CRC
/// of data holding CRCs is not itself trivial (tsl `lib/hash/crc32c.h`, `Mask`).
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let c = CASTAGNOLI.checksum(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Append one TFRecord holding `data`.
pub fn push_record(out: &mut Vec<u8>, data: &[u8]) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

/// Read the records of a TFRecord stream back, checking both CRCs of each.
pub fn read_records(bytes: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let head = bytes.get(at..at + 12).context("record header cut short")?;
        let len_bytes = &head[..8];
        if masked_crc32c(len_bytes).to_le_bytes() != head[8..12] {
            bail!("record at byte {at}: length CRC mismatch");
        }
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        let data = bytes
            .get(at + 12..at + 12 + len)
            .context("record data cut short")?;
        let crc = bytes
            .get(at + 12 + len..at + 16 + len)
            .context("record CRC cut short")?;
        if masked_crc32c(data).to_le_bytes() != crc {
            bail!("record at byte {at}: data CRC mismatch");
        }
        out.push(data);
        at += 16 + len;
    }
    Ok(out)
}

/// When the run started, in seconds since the epoch: `meta.json`'s `started`, else (a text log)
/// the file's modification time less the run's train clock.
fn start_time(run: &RunRecord) -> f64 {
    let from_meta = || -> Option<f64> {
        let text = std::fs::read_to_string(run.dir.join("meta.json")).ok()?;
        let meta: serde_json::Value = serde_json::from_str(&text).ok()?;
        let t = humantime::parse_rfc3339_weak(meta["started"].as_str()?).ok()?;
        Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
    };
    let from_mtime = || -> Option<f64> {
        let m = std::fs::metadata(&run.dir).ok()?.modified().ok()?;
        let end = m.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
        let clock = run.train.last().map_or(0.0, |t| t.train_time_ms / 1000.0);
        Some(end - clock)
    };
    match run.source {
        Source::RunDir => from_meta().or_else(from_mtime),
        Source::TextLog => from_mtime(),
    }
    .unwrap_or(0.0)
}

/// The event file of one run: the version record, then one event per step with all its scalars.
/// Wall times are the run's start plus its train clock at that step.
pub fn event_file(run: &RunRecord) -> Vec<u8> {
    use prost::Message;
    let start = start_time(run);
    let mut by_step: BTreeMap<u64, Vec<SummaryValue>> = BTreeMap::new();
    for (tag, pts) in run.all_scalars() {
        for (step, v) in pts {
            by_step.entry(step).or_default().push(SummaryValue {
                tag: tag.clone(),
                value: Some(ScalarValue::SimpleValue(v as f32)),
            });
        }
    }
    let clock: BTreeMap<u64, f64> = run
        .train
        .iter()
        .map(|t| (t.step, t.train_time_ms))
        .chain(run.val.iter().map(|v| (v.step, v.train_time_ms)))
        .collect();
    let mut out = Vec::new();
    let version = Event {
        wall_time: start,
        step: 0,
        what: Some(What::FileVersion("brain.Event:2".to_string())),
    };
    push_record(&mut out, &version.encode_to_vec());
    for (step, value) in by_step {
        let ms = clock.range(..=step).next_back().map_or(0.0, |(_, ms)| *ms);
        let event = Event {
            wall_time: start + ms / 1000.0,
            step: step as i64,
            what: Some(What::Summary(Summary { value })),
        };
        push_record(&mut out, &event.encode_to_vec());
    }
    out
}

/// Write one event file per run under `out/<run name>/`; returns the files written. A second
/// export of a run replaces its file (same name), so TensorBoard never sees its points twice.
pub fn export(runs: &[RunRecord], out: &Path) -> Result<Vec<PathBuf>> {
    let mut seen: BTreeMap<&str, &Path> = BTreeMap::new();
    for r in runs {
        if let Some(other) = seen.insert(&r.name, &r.dir) {
            bail!(
                "{} and {}: two runs named {}; export them to different --out directories",
                other.display(),
                r.dir.display(),
                r.name
            );
        }
    }
    let mut written = Vec::new();
    for r in runs {
        let dir = out.join(&r.name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        let path = dir.join(format!(
            "events.out.tfevents.{}.speedrun",
            start_time(r) as u64
        ));
        crate::fsutil::write_atomic(&path, &event_file(r))?;
        written.push(path);
    }
    Ok(written)
}
