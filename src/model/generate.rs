//! Autoregressive decoding (docs/model.md, "Generation"): [`generate`] feeds the prompt to a
//! [`Decoder`] (the KV cache, `decoder.rs`) in one forward, picks each token with a [`Sampler`],
//! and slides the context when it would grow past `seq_len`: the model then restarts on the last
//! `seq_len / 2` tokens (re-encoded from position 0, see [`Context`]), so it only ever sees
//! positions it was trained on and its hidden states are exactly those of a fresh run on that
//! window. Without the cache ([`GenerateOptions::cache`] false) every token re-runs the training
//! forward on the whole window ([`last_logits`]), with the same sliding rule; the two give the
//! same tokens (`src/model/tests/generate.rs`).

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use candle_core::{DType, Tensor};

use super::decoder::{last_logits, Decoder};
use super::sampling::{Sampler, SamplingParams};
use super::Gpt;

/// The tokens the model sees: `tokens[start..]`, never more than `seq_len`. A token that would
/// make the window longer moves its start to the last `seq_len / 2` tokens (at least one).
#[derive(Debug, Clone)]
pub struct Context {
    tokens: Vec<u32>,
    start: usize,
    seq_len: usize,
}

impl Context {
    /// A context holding `prompt`, which must be 1..=seq_len tokens.
    pub fn new(prompt: &[u32], seq_len: usize) -> Result<Context> {
        if prompt.is_empty() {
            bail!("generation needs at least one prompt token");
        }
        if prompt.len() > seq_len {
            bail!(
                "the prompt is {} tokens, longer than the model's context of {seq_len}",
                prompt.len()
            );
        }
        Ok(Context {
            tokens: prompt.to_vec(),
            start: 0,
            seq_len,
        })
    }

    /// Append a token; true when the window slid (the cache must be rebuilt).
    pub fn push(&mut self, token: u32) -> bool {
        self.tokens.push(token);
        if self.tokens.len() - self.start <= self.seq_len {
            return false;
        }
        self.start = self.tokens.len() - (self.seq_len / 2).max(1);
        true
    }

    /// What the model sees now.
    pub fn window(&self) -> &[u32] {
        &self.tokens[self.start..]
    }
}

/// How [`generate`] runs.
#[derive(Debug, Clone, Copy)]
pub struct GenerateOptions {
    /// Tokens to generate.
    pub max_new: usize,
    /// Decode with the KV cache (false: re-run the whole window for every token).
    pub cache: bool,
    pub compute: DType,
}

/// What [`generate`] made.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The new tokens (the prompt not included).
    pub tokens: Vec<u32>,
    /// From the call to the first token picked: the prompt's forward and one draw.
    pub first_token: Duration,
    pub elapsed: Duration,
    /// `on_token` asked to stop before `max_new` tokens.
    pub stopped: bool,
}

impl Generated {
    /// Tokens per second after the first (the steady decoding rate).
    pub fn decode_tok_per_s(&self) -> f64 {
        let n = self.tokens.len().saturating_sub(1) as f64;
        n / (self.elapsed - self.first_token).as_secs_f64().max(1e-12)
    }
}

/// Generate up to `opts.max_new` tokens after `prompt` (1..=seq_len tokens), handing each to
/// `on_token` as soon as it is picked; `on_token` may stop the generation early.
pub fn generate(
    model: &Gpt,
    prompt: &[u32],
    opts: &GenerateOptions,
    sampler: &mut Sampler,
    mut on_token: impl FnMut(u32) -> Result<ControlFlow<()>>,
) -> Result<Generated> {
    let t0 = Instant::now();
    let mut ctx = Context::new(prompt, model.cfg.seq_len)?;
    let ids = |w: &[u32]| Tensor::from_slice(w, (1, w.len()), &model.device);
    let mut dec = opts
        .cache
        .then(|| model.decoder(opts.compute))
        .transpose()?;
    let forward = |dec: &mut Option<Decoder>, window: &[u32], slid: bool| match dec {
        Some(d) => {
            let new = if slid {
                d.reset();
                window
            } else {
                &window[d.len()..]
            };
            d.feed(&ids(new)?)
        }
        None => last_logits(model, &ids(window)?, opts.compute),
    };
    let mut logits = forward(&mut dec, ctx.window(), false)?;
    let mut out = Generated {
        tokens: Vec::with_capacity(opts.max_new),
        first_token: Duration::ZERO,
        elapsed: Duration::ZERO,
        stopped: false,
    };
    for i in 0..opts.max_new {
        let next = sampler.pick(&logits.squeeze(0)?.to_vec1::<f32>()?)?;
        if i == 0 {
            out.first_token = t0.elapsed();
        }
        out.tokens.push(next);
        if on_token(next)?.is_break() {
            out.stopped = true;
            break;
        }
        if i + 1 < opts.max_new {
            let slid = ctx.push(next);
            logits = forward(&mut dec, ctx.window(), slid)?;
        }
    }
    out.elapsed = t0.elapsed();
    Ok(out)
}

/// Greedy decoding of `max_new` tokens after `prompt` in fp32, to the end.
pub fn greedy(model: &Gpt, prompt: &[u32], max_new: usize, cache: bool) -> Result<Generated> {
    let mut argmax = Sampler::new(SamplingParams::GREEDY, 0, model.cfg.vocab_size)?;
    let opts = GenerateOptions {
        max_new,
        cache,
        compute: DType::F32,
    };
    generate(model, prompt, &opts, &mut argmax, |_| {
        Ok(ControlFlow::Continue(()))
    })
}
