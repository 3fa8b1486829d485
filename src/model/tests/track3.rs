//! Track 3's architecture (docs/track3.md) against `scripts/golden_track3_model.py`, a PyTorch
//! version written from the benchmark's script: loss, logits after the softcap and every
//! parameter's gradient; the zero head's first loss; the init rules per parameter family.
//!
//! `.venv/bin/python scripts/golden_track3_model.py` (torch 2.15.0 CPU, fp32) printed:
//! loss 207.644958
//! loss_per_token 6.48890495
//! logit b=0 t=0 v=0 2.87237144
//! logit b=0 t=0 v=1 0.138153225
//! logit b=0 t=0 v=50 0.0868765414
//! logit b=0 t=0 v=511 0.40067482
//! logit b=0 t=15 v=0 1.29363501
//! logit b=0 t=15 v=1 0.187873557
//! logit b=0 t=15 v=50 -0.219268665
//! logit b=0 t=15 v=511 -0.959978163
//! logit b=1 t=0 v=0 2.87237144
//! logit b=1 t=0 v=1 0.138153225
//! logit b=1 t=0 v=50 0.0868765414
//! logit b=1 t=0 v=511 0.40067482
//! logit b=1 t=15 v=0 0.588959098
//! logit b=1 t=15 v=1 -0.144044802
//! logit b=1 t=15 v=50 -0.158520222
//! logit b=1 t=15 v=511 -1.70514953
//! gradnorm blocks.0.attn.k.bias 0.487839043
//! gradnorm blocks.0.attn.k.weight 11.8874969
//! gradnorm blocks.0.attn.proj.bias 8.48592186
//! gradnorm blocks.0.attn.proj.weight 15.7676611
//! gradnorm blocks.0.attn.q.bias 1.06896985
//! gradnorm blocks.0.attn.q.weight 12.3154259
//! gradnorm blocks.0.attn.v.bias 7.26876926
//! gradnorm blocks.0.attn.v.weight 25.9951191
//! gradnorm blocks.0.mlp.fc.bias 7.92882109
//! gradnorm blocks.0.mlp.fc.weight 61.4240341
//! gradnorm blocks.0.mlp.proj.bias 6.59011507
//! gradnorm blocks.0.mlp.proj.weight 38.4903717
//! gradnorm blocks.0.norm1.gains 2.32166958
//! gradnorm blocks.0.norm2.gains 3.71184111
//! gradnorm blocks.1.attn.k.bias 0.394918203
//! gradnorm blocks.1.attn.k.weight 8.43625832
//! gradnorm blocks.1.attn.proj.bias 5.99855328
//! gradnorm blocks.1.attn.proj.weight 15.2975216
//! gradnorm blocks.1.attn.q.bias 0.998129725
//! gradnorm blocks.1.attn.q.weight 7.7851367
//! gradnorm blocks.1.attn.v.bias 6.11811924
//! gradnorm blocks.1.attn.v.weight 27.5087452
//! gradnorm blocks.1.mlp.fc.bias 6.56833649
//! gradnorm blocks.1.mlp.fc.weight 51.6626244
//! gradnorm blocks.1.mlp.proj.bias 5.16005087
//! gradnorm blocks.1.mlp.proj.weight 31.3851395
//! gradnorm blocks.1.norm1.gains 1.90152204
//! gradnorm blocks.1.norm2.gains 3.27408171
//! gradnorm embed.weight 7.50926733
//! gradnorm norm1.gains 6.59709692
//! gradnorm norm2.gains 8.5783596
//! gradnorm proj.bias 8.19109344
//! gradnorm proj.weight 57.7736511
//! gradnorm all 123.438629

use candle_core::{DType, Device, IndexOp, Tensor};

use super::{fixture, rel_err};
use crate::model::{Gpt, GptConfig};

/// The golden fixture's configuration: vocab 512, 2 layers, width 64 in heads of 32, T 32.
pub(super) fn t3_cfg() -> GptConfig {
    GptConfig::track3_shaped(512, 2, 64, 32, 32)
}

/// The printout above, parsed from this file's own comment.
fn golden() -> Vec<(String, Vec<String>)> {
    include_str!("track3.rs")
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .filter_map(|l| l.strip_prefix("//! "))
        .filter(|l| l.starts_with("loss") || l.starts_with("logit") || l.starts_with("gradnorm"))
        .map(|l| {
            let f: Vec<String> = l.split_whitespace().map(str::to_string).collect();
            (f[0].clone(), f[1..].to_vec())
        })
        .collect()
}

fn want(kind: &str, key: &str) -> f64 {
    golden()
        .into_iter()
        .find(|(k, f)| k == kind && (key.is_empty() || f[..f.len() - 1].join(" ") == key))
        .map(|(_, f)| f[f.len() - 1].parse().unwrap())
        .unwrap_or_else(|| panic!("no golden {kind} {key}"))
}

fn batch(dev: &Device) -> (Tensor, Tensor) {
    let b = candle_core::safetensors::load(fixture("track3_model/batch.safetensors"), dev).unwrap();
    (
        b["idx"].to_dtype(DType::U32).unwrap(),
        b["targets"].to_dtype(DType::U32).unwrap(),
    )
}

/// Summed loss, per-token loss, the softcapped logits and every gradient norm within 2e-5 of
/// PyTorch's (fp32 rounding over a different summation order; logits near zero measured
/// against the largest golden logit).
#[test]
fn track3_model_matches_pytorch() {
    let dev = Device::Cpu;
    let model =
        Gpt::from_safetensors(&t3_cfg(), &fixture("track3_model/model.safetensors"), &dev).unwrap();
    let (idx, targets) = batch(&dev);
    let tol = 2e-5;
    let loss = model.loss(&idx, &targets, DType::F32, None).unwrap();
    let got = loss.to_scalar::<f32>().unwrap() as f64;
    assert!(rel_err(got, want("loss", "")) < tol, "loss {got}");
    let per_token = model.eval_loss(&idx, &targets, DType::F32).unwrap() as f64;
    assert!(rel_err(per_token, want("loss_per_token", "")) < tol);
    let logits = model.logits(&idx, DType::F32, None).unwrap();
    assert_eq!(logits.dims(), [2, 16, 512]);
    for (b, t, v) in [
        (0, 0, 0),
        (0, 15, 1),
        (1, 15, 50),
        (1, 15, 511),
        (0, 15, 511),
        (1, 0, 1),
    ] {
        let got = logits.i((b, t, v)).unwrap().to_scalar::<f32>().unwrap() as f64;
        let w = want("logit", &format!("b={b} t={t} v={v}"));
        assert!(
            (got - w).abs() < tol * 3.0,
            "logit ({b},{t},{v}): {got} vs {w}"
        );
    }
    let grads = loss.backward().unwrap();
    let mut all = 0.0;
    for (name, var) in model.vars() {
        let g = grads
            .get(var.as_tensor())
            .expect("every parameter gets a gradient");
        let n = (g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64)
            .sqrt();
        all += n * n;
        let w = want("gradnorm", name);
        assert!(rel_err(n, w) < tol, "grad of {name}: {n} vs {w}");
    }
    assert!(rel_err(all.sqrt(), want("gradnorm", "all")) < tol);
}

/// A fresh Track-3 model's head is zero, so every logit is 0 and the first loss is ln(vocab)
/// per token (Track 3's log opens with `step:0/3250 val_loss:10.82584` = ln 50304).
#[test]
fn fresh_track3_model_starts_at_ln_vocab() {
    let cfg = GptConfig::track3_shaped(50304, 1, 32, 16, 16);
    let model = Gpt::new(&cfg, &Device::Cpu, 3).unwrap();
    let idx = super::tokens(2, 16, 50304, 1);
    let tgt = super::tokens(2, 16, 50304, 2);
    let per_token = model.eval_loss(&idx, &tgt, DType::F32).unwrap() as f64;
    assert!((per_token - (50304f64).ln()).abs() < 1e-6, "{per_token}");
    let sum = model.loss(&idx, &tgt, DType::F32, None).unwrap();
    let sum = sum.to_scalar::<f32>().unwrap() as f64;
    assert!(rel_err(sum, 32.0 * (50304f64).ln()) < 1e-6, "{sum}");
}

/// Generation with the KV cache works for Track 3's architecture as for record 4's: the cached
/// logits equal the full forward's last position (prefill, then one token at a time up to the
/// context), and greedy decoding with and without the cache agrees past the context.
#[test]
fn track3_decodes_with_the_kv_cache() {
    use crate::model::decoder::last_logits;
    use crate::model::generate::greedy;
    let dev = Device::Cpu;
    let model =
        Gpt::from_safetensors(&t3_cfg(), &fixture("track3_model/model.safetensors"), &dev).unwrap();
    let t = model.cfg.seq_len;
    let ids = super::tokens(2, t, 512, 5);
    let mut dec = model.decoder(DType::F32).unwrap();
    let mut fed = 3;
    let mut logits = dec.feed(&ids.narrow(1, 0, fed).unwrap()).unwrap();
    let mut worst = 0f32;
    loop {
        let full = last_logits(&model, &ids.narrow(1, 0, fed).unwrap(), DType::F32).unwrap();
        let d = (&logits - &full).unwrap().abs().unwrap().max_all().unwrap();
        worst = worst.max(d.to_scalar::<f32>().unwrap());
        if fed == t {
            break;
        }
        logits = dec.feed(&ids.narrow(1, fed, 1).unwrap()).unwrap();
        fed += 1;
    }
    assert!(worst <= 1e-5, "cached vs full logits differ by {worst}");
    let prompt = [4u32, 100, 7];
    let a = greedy(&model, &prompt, 2 * t, true).unwrap();
    let b = greedy(&model, &prompt, 2 * t, false).unwrap();
    assert_eq!(a.tokens, b.tokens);
}
