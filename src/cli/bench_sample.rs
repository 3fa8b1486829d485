//! `speedrun bench sample`: greedy generation on the CPU or a GPU, with the KV cache and without
//! it, next to the PyTorch peer (scripts/bench_sample_torch.py: the same model, prompt length,
//! threads and a KV cache of its own), the sides interleaved repeat by repeat.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Args;
use rand::{Rng, SeedableRng};

use super::bench::run_peer_script;
use super::train::ConfigArgs;
use crate::model::generate::greedy;
use crate::model::{Gpt, GptConfig};

#[derive(Debug, Args)]
pub struct SampleBench {
    /// The model's shape comes from the preset (-c speedrun-124m for the record's); the weights
    /// are a random init.
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Random prompt tokens before generation.
    #[arg(long, default_value_t = 16)]
    pub prompt_tokens: usize,
    /// Tokens generated per timed run.
    #[arg(long, default_value_t = 64)]
    pub tokens: usize,
    /// Interleaved repeats (speedrun with and without the cache, then the peer); medians are
    /// reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Leave out generation without the cache (slow at the 124M shape).
    #[arg(long)]
    pub cache_only: bool,
    /// Also run the PyTorch peer.
    #[arg(long)]
    pub peer: bool,
    /// Python of the peer (the project's venv: scripts/setup-venv.sh).
    #[arg(long, default_value = ".venv/bin/python")]
    pub python: PathBuf,
}

/// (first-token ms, tokens/s) of each repeat.
type Times = Vec<(f64, f64)>;

pub fn bench_sample(a: SampleBench) -> Result<()> {
    let cfg = a.cfg.resolve()?;
    let m = &cfg.model;
    if a.tokens < 2 || a.repeats == 0 {
        anyhow::bail!("--tokens must be at least 2 and --repeats at least 1");
    }
    let device = crate::device::parse_device(&a.device)?;
    let model = Gpt::new(m, &device, cfg.seed)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let prompt: Vec<u32> = (0..a.prompt_tokens)
        .map(|_| rng.random_range(0..m.vocab_size as u32))
        .collect();
    let modes: &[(&str, bool)] = if a.cache_only {
        &[("cache", true)]
    } else {
        &[("cache", true), ("nocache", false)]
    };
    // One untimed run per mode: first-call allocations.
    for &(_, cache) in modes {
        greedy(&model, &prompt, 2, cache)?;
    }
    let mut ours: Vec<Times> = vec![Vec::new(); modes.len()];
    let mut peer: Vec<Times> = vec![Vec::new(); modes.len()];
    for _ in 0..a.repeats {
        for (k, &(_, cache)) in modes.iter().enumerate() {
            let g = greedy(&model, &prompt, a.tokens, cache)?;
            ours[k].push((g.first_token.as_secs_f64() * 1e3, g.decode_tok_per_s()));
        }
        if a.peer {
            let names: Vec<&str> = modes.iter().map(|m| m.0).collect();
            let out = run_peer(&a, m, &names.join(","))?;
            for (k, name) in names.iter().enumerate() {
                let f = |key: &str| out[*name][key].as_f64();
                let (ms, tps) = (f("first_token_ms"), f("tok_per_s"));
                peer[k].push(ms.zip(tps).ok_or_else(|| anyhow!("peer JSON: {out}"))?);
            }
        }
    }
    println!(
        "greedy generation, L{}/D{}/T{} vocab {}, prompt {} + {} new tokens, {}, median of {} interleaved repeats",
        m.n_layer,
        m.n_embd,
        m.seq_len,
        m.vocab_size,
        a.prompt_tokens,
        a.tokens,
        crate::device::describe(&device),
        a.repeats
    );
    println!(
        "{:<9} {:<8} {:>15} {:>10}   tok/s of each repeat",
        "side", "mode", "first token ms", "tok/s"
    );
    let sides = [("speedrun", &ours), ("pytorch", &peer)];
    for (side, times) in sides.iter().filter(|s| !s.1[0].is_empty()) {
        for (k, &(mode, _)) in modes.iter().enumerate() {
            let t = &times[k];
            let each: Vec<String> = t.iter().map(|x| format!("{:.1}", x.1)).collect();
            println!(
                "{side:<9} {mode:<8} {:>15.1} {:>10.1}   {}",
                median(t.iter().map(|x| x.0)),
                median(t.iter().map(|x| x.1)),
                each.join(" ")
            );
        }
    }
    if a.peer {
        for (k, &(mode, _)) in modes.iter().enumerate() {
            let r = median(ours[k].iter().map(|x| x.1)) / median(peer[k].iter().map(|x| x.1));
            println!("speedrun/pytorch tok/s, {mode}: {r:.2}");
        }
    }
    Ok(())
}

fn median(xs: impl Iterator<Item = f64>) -> f64 {
    crate::train::bench::median(&mut xs.collect::<Vec<_>>())
}

/// One peer run (one repeat of every mode).
fn run_peer(a: &SampleBench, m: &GptConfig, modes: &str) -> Result<serde_json::Value> {
    let args: Vec<String> = [
        ("--n-layer", m.n_layer.to_string()),
        ("--n-head", m.n_head.to_string()),
        ("--n-embd", m.n_embd.to_string()),
        ("--seq-len", m.seq_len.to_string()),
        ("--vocab", m.vocab_size.to_string()),
        ("--prompt-tokens", a.prompt_tokens.to_string()),
        ("--tokens", a.tokens.to_string()),
        ("--modes", modes.to_string()),
        ("--threads", rayon::current_num_threads().to_string()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .collect();
    run_peer_script(&a.python, "bench_sample_torch.py", &args)
}
