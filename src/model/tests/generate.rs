//! Decoding with the KV cache against the full forward, and against PyTorch.

use std::ops::ControlFlow;

use candle_core::{DType, Device, Tensor};

use super::*;
use crate::model::decoder::last_logits;
use crate::model::generate::{generate, greedy, Context, GenerateOptions, Generated};
use crate::model::sampling::{Sampler, SamplingParams};

// `.venv/bin/python scripts/golden_sample.py` (torch 2.15.0 CPU, fp32) printed:
// final train loss 3.2632
// prompt 76 11 32 13 89
// tokens 54 36 27 26 37 27 38 93 17 70 10 27 8 44 67 82 96 1 78 8 55 94 8 15 27 56 1 41 26 35 86 6
// smallest top-2 logit gap 0.1403
// (tests/cli.rs checks the same tokens through `speedrun sample --prompt "m,A.z"`.)
const GOLDEN_PROMPT: [u32; 5] = [76, 11, 32, 13, 89];
const GOLDEN_TOKENS: [u32; 32] = [
    54, 36, 27, 26, 37, 27, 38, 93, 17, 70, 10, 27, 8, 44, 67, 82, 96, 1, 78, 8, 55, 94, 8, 15, 27,
    56, 1, 41, 26, 35, 86, 6,
];

/// The trained fixture of scripts/golden_sample.py (tiny_cfg's shape).
fn trained() -> Gpt {
    Gpt::from_safetensors(
        &tiny_cfg(),
        &fixture("sample_gpt.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

/// `n` tokens drawn by `p` from seed 11.
fn run(model: &Gpt, prompt: &[u32], n: usize, cache: bool, p: SamplingParams) -> Generated {
    let mut s = Sampler::new(p, 11, model.cfg.vocab_size).unwrap();
    let opts = GenerateOptions {
        max_new: n,
        cache,
        compute: DType::F32,
    };
    generate(model, prompt, &opts, &mut s, |_| {
        Ok(ControlFlow::Continue(()))
    })
    .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn greedy_matches_pytorch() {
    let model = trained();
    for cache in [true, false] {
        let got = greedy(&model, &GOLDEN_PROMPT, 32, cache).unwrap();
        assert_eq!(got.tokens, GOLDEN_TOKENS, "cache {cache}");
    }
}

#[test]
fn cached_logits_equal_the_full_forwards_last_position() {
    let model = trained();
    let t = model.cfg.seq_len;
    // Two sequences at once: the batch dimension goes through the cache too.
    let ids = tokens(2, t, model.cfg.vocab_size, 5);
    let mut dec = model.decoder(DType::F32).unwrap();
    // A prefill of 5, then one token at a time up to the full context.
    let mut fed = 5;
    let mut logits = dec.feed(&ids.narrow(1, 0, fed).unwrap()).unwrap();
    let mut worst = 0f32;
    loop {
        let full = last_logits(&model, &ids.narrow(1, 0, fed).unwrap(), DType::F32).unwrap();
        assert_eq!(logits.dims(), [2, model.cfg.vocab_size]);
        worst = worst.max(max_abs_diff(&logits, &full));
        if fed == t {
            break;
        }
        logits = dec.feed(&ids.narrow(1, fed, 1).unwrap()).unwrap();
        fed += 1;
    }
    assert_eq!(dec.len(), t);
    assert!(worst <= 1e-5, "cached vs full logits differ by {worst}");
    // The context is full: one more token is an error, and a reset starts over.
    assert!(dec.feed(&ids.narrow(1, 0, 1).unwrap()).is_err());
    dec.reset();
    let again = dec.feed(&ids).unwrap();
    let full = last_logits(&model, &ids, DType::F32).unwrap();
    assert!(max_abs_diff(&again, &full) <= 1e-5);
}

#[test]
fn cache_and_full_rerun_agree_past_the_context_and_at_any_length() {
    let model = trained();
    // 3 × seq_len new tokens from prompts of 1 token up to the whole context: the window slides
    // several times, also right after the prompt.
    for len in [1, 7, 16] {
        let prompt: Vec<u32> = (0..len as u32).map(|i| (i * 13 + 5) % 97).collect();
        let a = greedy(&model, &prompt, 48, true).unwrap();
        let b = greedy(&model, &prompt, 48, false).unwrap();
        assert_eq!(a.tokens, b.tokens, "prompt of {len}");
    }
}

#[test]
fn a_seed_reproduces_a_sample() {
    let model = trained();
    let p = SamplingParams {
        temperature: 1.0,
        top_k: Some(20),
        top_p: 0.95,
    };
    let a = run(&model, &GOLDEN_PROMPT, 40, true, p);
    let b = run(&model, &GOLDEN_PROMPT, 40, true, p);
    assert_eq!(a.tokens, b.tokens);
    // The same draws without the cache: the logits agree closely enough for the same picks.
    assert_eq!(a.tokens, run(&model, &GOLDEN_PROMPT, 40, false, p).tokens);
    // Sampling is not greedy decoding.
    assert_ne!(a.tokens[..32], GOLDEN_TOKENS);
}

#[test]
fn the_window_slides_to_the_last_half_and_prompts_must_fit() {
    let mut c = Context::new(&[1, 2, 3], 4).unwrap();
    assert!(!c.push(4));
    assert_eq!(c.window(), [1, 2, 3, 4]);
    assert!(c.push(5));
    assert_eq!(c.window(), [4, 5]);
    assert!(!c.push(6) && !c.push(7));
    assert!(c.push(8));
    assert_eq!(c.window(), [7, 8]);
    assert!(Context::new(&[], 4).is_err());
    let e = Context::new(&[0; 5], 4).err().unwrap().to_string();
    assert!(e.contains("5 tokens") && e.contains("context of 4"), "{e}");
}

#[test]
fn a_callback_stops_generation() {
    let model = trained();
    let mut s = Sampler::new(SamplingParams::GREEDY, 0, 97).unwrap();
    let opts = GenerateOptions {
        max_new: 30,
        cache: true,
        compute: DType::F32,
    };
    let mut seen = 0;
    let g = generate(&model, &GOLDEN_PROMPT, &opts, &mut s, |_| {
        seen += 1;
        Ok(if seen == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })
    .unwrap();
    assert!(g.stopped);
    assert_eq!(g.tokens, GOLDEN_TOKENS[..3]);
}
