//! `speedrun bench model|optim|diag|sample`: timings, with the PyTorch peer run in the same invocation.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};

use super::train::{ConfigArgs, DeviceArgs};
use crate::device::Exec;
use crate::optim::spectral::SvMethod;
use crate::optim::{self, Method};
use crate::train::{self, Config};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// One full training step (forward, backward, optimizer) of a preset on synthetic tokens.
    Model(ModelBench),
    /// One optimizer step per method on the 124M weight shapes (or a preset's); Muon is always
    /// timed, as the yardstick.
    Optim(OptimBench),
    /// One optimizer-diagnostics pass per method on the 124M weight shapes (docs/diagnostics.md).
    Diag(DiagBenchArgs),
    /// Greedy generation with and without the KV cache: time to the first token and tokens/s.
    Sample(super::bench_sample::SampleBench),
}

#[derive(Debug, Args)]
pub struct ModelBench {
    #[command(flatten)]
    pub cfg: ConfigArgs,
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Timed steps (after --warmup untimed ones).
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub steps: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Also run the PyTorch peer (scripts/bench_torch.py) with the same shapes and threads.
    #[arg(long)]
    pub peer: bool,
    /// Python of the peer (the project's venv: scripts/setup-venv.sh).
    #[arg(long, default_value = ".venv/bin/python")]
    pub python: PathBuf,
    /// Peak dense TFLOP/s of the device, for MFU (H100 SXM bf16: 989).
    #[arg(long)]
    pub peak_tflops: Option<f64>,
}

/// What `bench optim` and `bench diag` share: the device, the methods, the hidden-matrix shapes
/// of a record-4 model and how many timed passes over them.
#[derive(Debug, Args)]
pub struct MatrixBench {
    #[command(flatten)]
    pub dev: DeviceArgs,
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "adamw,muon,newton-muon,neon,neon-fstar"
    )]
    pub methods: Vec<Method>,
    /// Width/layers of the matrix shapes (default: record 4, 12 × 768).
    #[arg(long, default_value_t = 768, value_parser = positive)]
    pub n_embd: usize,
    #[arg(long, default_value_t = 12, value_parser = positive)]
    pub n_layer: usize,
    #[arg(long, default_value_t = 3, value_parser = positive)]
    pub iters: usize,
}

#[derive(Debug, Args)]
pub struct OptimBench {
    #[command(flatten)]
    pub shapes: MatrixBench,
    /// Also time PyTorch's Muon step (scripts/bench_optim_torch.py) on the same shapes and threads.
    #[arg(long)]
    pub peer: bool,
    /// Python of the peer (the project's venv: scripts/setup-venv.sh).
    #[arg(long, default_value = ".venv/bin/python")]
    pub python: PathBuf,
}

#[derive(Debug, Args)]
pub struct DiagBenchArgs {
    #[command(flatten)]
    pub shapes: MatrixBench,
    /// Singular values through the Gram matrix's eigenvalues (what training uses), faer's SVD,
    /// or both.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "gram")]
    pub sv: Vec<SvChoice>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SvChoice {
    Gram,
    Svd,
}

/// A size or count of at least 1 (a width of 0 has no matrices to time).
fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number >= 1")),
    }
}

pub fn run(a: BenchArgs) -> Result<()> {
    match a.what {
        BenchWhat::Model(m) => bench_model(m),
        BenchWhat::Optim(o) => bench_optim(o),
        BenchWhat::Diag(d) => bench_diag(d),
        BenchWhat::Sample(s) => super::bench_sample::bench_sample(s),
    }
}

impl MatrixBench {
    /// The hidden matrices of an `n_layer` × `n_embd` record-4 model, packed c_attn included.
    fn matrices(&self) -> Vec<(usize, usize)> {
        let d = self.n_embd;
        (0..self.n_layer)
            .flat_map(|_| [(3 * d, d), (d, d), (4 * d, d), (d, 4 * d)])
            .collect()
    }
}

fn bench_diag(a: DiagBenchArgs) -> Result<()> {
    let exec = a.shapes.dev.resolve()?;
    let shapes = a.shapes.matrices();
    println!(
        "diagnostics pass on {} matrices ({}x{} layers/width, q/k/v apart: {} reported), {}",
        shapes.len(),
        a.shapes.n_layer,
        a.shapes.n_embd,
        shapes.len() / 4 * 6,
        crate::device::describe(&exec.device)
    );
    println!(
        "{:<12} {:>5} {:>12} {:>12} {:>12} {:>12}",
        "method", "sv", "before ms", "after ms", "total ms", "cpu ms"
    );
    for m in &a.shapes.methods {
        for sv in &a.sv {
            let (name, method) = match sv {
                SvChoice::Gram => ("gram", SvMethod::Gram),
                SvChoice::Svd => ("svd", SvMethod::Svd),
            };
            let r = train::bench::bench_diagnostics(*m, &exec, &shapes, a.shapes.iters, method)?;
            println!(
                "{:<12} {:>5} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
                m.name(),
                name,
                r.before_ms,
                r.after_ms,
                r.total_ms,
                r.cpu_ms.unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

fn bench_model(a: ModelBench) -> Result<()> {
    let cfg = a.cfg.resolve()?;
    let exec = a.dev.resolve()?;
    let r = train::bench::bench_model(&cfg, &exec, a.warmup, a.steps)?;
    let (b, t, accum) = (
        cfg.train.micro_batch,
        cfg.model.seq_len,
        cfg.train.accum_steps(cfg.model.seq_len)?,
    );
    println!(
        "speedrun  {} {} {} {:?} | {} tokens/step (accum {accum} × {b} × {t}) | step {:.1} ms (median of {}) | {:.0} tok/s",
        cfg.name,
        cfg.optim.name,
        crate::device::describe(&exec.device),
        exec.compute,
        cfg.train.batch_tokens,
        r.step_s * 1e3,
        r.timed,
        r.tok_per_s
    );
    if r.allocs_per_step > 0 {
        println!(
            "          {} allocations per step ({:.1} MB), peak RSS {}",
            r.allocs_per_step,
            r.alloc_bytes_per_step as f64 / 1e6,
            gib(r.peak_rss_bytes)
        );
    }
    if let Some(peak) = a.peak_tflops {
        let mfu = train::bench::flops_per_token(&cfg.model) * r.tok_per_s / (peak * 1e12);
        println!("          MFU {:.1}% (of {peak} TFLOP/s)", mfu * 100.0);
    }
    if !a.peer {
        return Ok(());
    }
    if !matches!(cfg.optim.name, Method::Muon | Method::AdamW) {
        println!("pytorch   peer implements muon and adamw only; rerun with --optim muon or adamw to compare");
        return Ok(());
    }
    let peer = run_peer(&a, &cfg, &exec)?;
    let peer_ms = peer
        .get("step_ms")
        .and_then(|x| x.as_f64())
        .ok_or_else(|| anyhow!("peer JSON lacks step_ms: {peer}"))?;
    let peer_rss = peer.get("peak_rss_bytes").and_then(|x| x.as_u64());
    println!(
        "pytorch   {} | step {:.1} ms | {:.0} tok/s | peak RSS {} | speedrun/pytorch time = {:.2}",
        peer.get("label")
            .and_then(|x| x.as_str())
            .unwrap_or("torch"),
        peer_ms,
        cfg.train.batch_tokens as f64 / (peer_ms / 1e3),
        gib(peer_rss),
        r.step_s * 1e3 / peer_ms
    );
    Ok(())
}

/// A byte count in GiB, or "n/a".
fn gib(bytes: Option<u64>) -> String {
    bytes.map_or("n/a".into(), |b| {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    })
}

/// The peer scripts and the modules they import.
const PEER_SCRIPTS: [(&str, &str); 5] = [
    (
        "bench_torch.py",
        include_str!("../../scripts/bench_torch.py"),
    ),
    (
        "bench_optim_torch.py",
        include_str!("../../scripts/bench_optim_torch.py"),
    ),
    ("gpt_ref.py", include_str!("../../scripts/gpt_ref.py")),
    (
        "bench_sample_torch.py",
        include_str!("../../scripts/bench_sample_torch.py"),
    ),
    ("gpt_decode.py", include_str!("../../scripts/gpt_decode.py")),
];

/// Run scripts/bench_torch.py on the same shapes, threads, precision and optimizer; returns the
/// JSON object it prints last.
fn run_peer(a: &ModelBench, cfg: &Config, exec: &Exec) -> Result<serde_json::Value> {
    let m = &cfg.model;
    let accum = cfg.train.accum_steps(m.seq_len)?;
    let cuda = exec.device.is_cuda();
    let mut args: Vec<String> = [
        ("--n-layer", m.n_layer.to_string()),
        ("--n-head", m.n_head.to_string()),
        ("--n-embd", m.n_embd.to_string()),
        ("--seq-len", m.seq_len.to_string()),
        ("--vocab", m.vocab_size.to_string()),
        ("--batch", cfg.train.micro_batch.to_string()),
        ("--accum", accum.to_string()),
        ("--steps", a.steps.to_string()),
        ("--warmup", a.warmup.to_string()),
        ("--threads", rayon::current_num_threads().to_string()),
        ("--device", (if cuda { "cuda" } else { "cpu" }).to_string()),
        ("--precision", exec.precision().to_string()),
        ("--optim", cfg.optim.name.to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect();
    // On a GPU the peer is PyTorch at its best: torch.compile, as modded-nanogpt runs it.
    if cuda {
        args.push("--compile".into());
    }
    run_peer_script(&a.python, "bench_torch.py", &args)
}

/// Run one of the built-in peer scripts with `python` and parse the JSON object it prints last.
/// The scripts are written to a temporary directory, so `--peer` works from any directory.
pub(super) fn run_peer_script(
    python: &Path,
    script: &str,
    args: &[String],
) -> Result<serde_json::Value> {
    let scripts = tempfile::tempdir()?;
    for (name, text) in PEER_SCRIPTS {
        std::fs::write(scripts.path().join(name), text)?;
    }
    let out = Command::new(python)
        .arg(scripts.path().join(script))
        .args(args)
        .output()
        .with_context(|| {
            format!(
                "{}: cannot run the PyTorch peer (create the venv: scripts/setup-venv.sh)",
                python.display()
            )
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("PyTorch peer failed: {}", err.lines().last().unwrap_or(""));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("peer printed no JSON: {text}"))
}

fn bench_optim(a: OptimBench) -> Result<()> {
    let exec = a.shapes.dev.resolve()?;
    let device = exec.device.clone();
    let d = a.shapes.n_embd;
    let shapes = a.shapes.matrices();
    let mut methods = a.shapes.methods.clone();
    if !methods.contains(&Method::Muon) {
        methods.insert(0, Method::Muon);
    }
    let mut rows = Vec::new();
    for m in &methods {
        let ms =
            optim::bench::bench_step(*m, &exec.device, exec.ns_dtype, &shapes, a.shapes.iters)?;
        rows.push((*m, ms));
    }
    let muon = rows
        .iter()
        .find(|(m, _)| *m == Method::Muon)
        .map(|r| r.1)
        .unwrap_or(f64::NAN);
    println!(
        "optimizer step on {} matrices ({}x{} layers/width), {}",
        shapes.len(),
        a.shapes.n_layer,
        d,
        crate::device::describe(&device)
    );
    println!("{:<12} {:>12} {:>10}", "method", "ms/step", "vs muon");
    for (m, ms) in rows {
        println!("{:<12} {:>12.1} {:>9.2}x", m.name(), ms, ms / muon);
    }
    if a.peer {
        let args: Vec<String> = [
            ("--n-layer", a.shapes.n_layer),
            ("--n-embd", a.shapes.n_embd),
            ("--iters", a.shapes.iters),
            ("--threads", rayon::current_num_threads()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v.to_string()])
        .chain(
            device
                .is_cuda()
                .then(|| ["--device".to_string(), "cuda".to_string()])
                .into_iter()
                .flatten(),
        )
        .collect();
        let peer = run_peer_script(&a.python, "bench_optim_torch.py", &args)?;
        let ms = peer
            .get("step_ms")
            .and_then(|x| x.as_f64())
            .ok_or_else(|| anyhow!("peer JSON lacks step_ms: {peer}"))?;
        println!(
            "{:<12} {:>12.1} {:>9.2}x   (PyTorch's Muon: {} matrices; speedrun muon / PyTorch = {:.2})",
            "torch-muon",
            ms,
            ms / muon,
            peer.get("matrices").and_then(|x| x.as_u64()).unwrap_or(0),
            muon / ms
        );
    }
    Ok(())
}
