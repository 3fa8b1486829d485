//! Gradients, eval/bf16 paths and the layer-input sink.

use candle_core::{DType, Device, Tensor};

use super::*;
use crate::model::Gpt;

#[test]
fn every_parameter_gets_a_finite_nonzero_gradient() {
    let cfg = tiny_cfg();
    let model = Gpt::new(&cfg, &Device::Cpu, 7).unwrap();
    let loss = model
        .loss(
            &tokens(2, 16, 97, 1),
            &tokens(2, 16, 97, 2),
            DType::F32,
            None,
        )
        .unwrap();
    let grads = loss.backward().unwrap();
    assert_eq!(model.vars().len(), 1 + 4 * cfg.n_layer);
    for (name, var) in model.vars() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        assert_eq!(g.dims(), var.dims(), "{name}");
        let v: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{name}: non-finite gradient"
        );
        let n2: f32 = v.iter().map(|x| x * x).sum();
        assert!(n2 > 0.0, "{name}: zero gradient");
    }
}

#[test]
fn eval_loss_equals_loss_and_bf16_is_close() {
    let model = Gpt::new(&tiny_cfg(), &Device::Cpu, 3).unwrap();
    let (idx, tgt) = (tokens(2, 16, 97, 5), tokens(2, 16, 97, 6));
    let l32 = model.loss(&idx, &tgt, DType::F32, None).unwrap();
    assert!(l32.track_op(), "loss must carry a graph");
    let l32 = l32.to_scalar::<f32>().unwrap();
    let e32 = model.eval_loss(&idx, &tgt, DType::F32).unwrap();
    assert_eq!(
        l32.to_bits(),
        e32.to_bits(),
        "eval_loss {e32} vs loss {l32}"
    );
    // Untrained model: loss near ln(97) = 4.575.
    assert!((l32 - 97f32.ln()).abs() < 0.5, "{l32}");

    let l16 = model.loss(&idx, &tgt, DType::BF16, None).unwrap();
    assert_eq!(
        l16.dtype(),
        DType::F32,
        "loss stays fp32 under bf16 compute"
    );
    let l16 = l16.to_scalar::<f32>().unwrap();
    let e16 = model.eval_loss(&idx, &tgt, DType::BF16).unwrap();
    assert_eq!(l16.to_bits(), e16.to_bits());
    // bf16 keeps 8 mantissa bits; the loss should still agree to ~1%.
    assert!(
        ((l16 - l32) / l32).abs() < 1e-2,
        "bf16 loss {l16} vs fp32 {l32}"
    );
    assert_ne!(
        l16.to_bits(),
        l32.to_bits(),
        "bf16 path must actually compute in bf16"
    );
}

#[test]
fn sink_sees_every_hidden_linear_input_and_changes_nothing() {
    let cfg = tiny_cfg();
    let (b, t, d) = (2, 8, cfg.n_embd);
    let model = Gpt::new(&cfg, &Device::Cpu, 11).unwrap();
    let (idx, tgt) = (tokens(b, t, 97, 9), tokens(b, t, 97, 10));
    let plain = model
        .loss(&idx, &tgt, DType::BF16, None)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let mut rec = Recorder::default();
    let with = model
        .loss(&idx, &tgt, DType::BF16, Some(&mut rec))
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(plain.to_bits(), with.to_bits());

    let mut expected = Vec::new();
    for i in 0..cfg.n_layer {
        expected.push((
            format!("transformer.h.{i}.attn.c_attn.weight"),
            vec![b * t, d],
        ));
        expected.push((
            format!("transformer.h.{i}.attn.c_proj.weight"),
            vec![b * t, d],
        ));
        expected.push((format!("transformer.h.{i}.mlp.c_fc.weight"), vec![b * t, d]));
        expected.push((
            format!("transformer.h.{i}.mlp.c_proj.weight"),
            vec![b * t, 4 * d],
        ));
    }
    let got: Vec<(String, Vec<usize>)> = rec
        .calls
        .iter()
        .map(|c| (c.0.clone(), c.1.clone()))
        .collect();
    assert_eq!(got, expected);
    for (name, _, dtype, tracked, _) in &rec.calls {
        assert_eq!(*dtype, DType::F32, "{name}");
        assert!(!tracked, "{name}: sink input must be detached");
        assert!(model.vars().contains_key(name), "{name} is a parameter");
    }
    // Every input of a normed Linear has rms 1 per row, so its norm is sqrt(rows · d).
    let normed = ((b * t * d) as f64).sqrt();
    assert!(
        rel_err(rec.calls[0].4, normed) < 1e-3,
        "{} vs {normed}",
        rec.calls[0].4
    );

    // logits() feeds the sink too.
    let mut rec2 = Recorder::default();
    model.logits(&idx, DType::F32, Some(&mut rec2)).unwrap();
    assert_eq!(rec2.calls.len(), 4 * cfg.n_layer);
}

fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    let dot: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (*x as f64) * (*y as f64))
        .sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn bf16_gradients_reach_the_fp32_master_weights_and_match_fp32() {
    // The bf16 path casts the fp32 Vars inside forward; `to_dtype` must carry the gradient back
    // to them in fp32, and the direction must agree with the fp32 path.
    let model = Gpt::new(&tiny_cfg(), &Device::Cpu, 21).unwrap();
    let (idx, tgt) = (tokens(2, 16, 97, 30), tokens(2, 16, 97, 31));
    let g32 = model
        .loss(&idx, &tgt, DType::F32, None)
        .unwrap()
        .backward()
        .unwrap();
    let g16 = model
        .loss(&idx, &tgt, DType::BF16, None)
        .unwrap()
        .backward()
        .unwrap();
    for (name, var) in model.vars() {
        let a = g32.get(var.as_tensor()).unwrap();
        let b = g16
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no bf16 gradient"));
        assert_eq!(b.dtype(), DType::F32, "{name}");
        let c = cosine(a, b);
        assert!(c > 0.98, "{name}: cosine(fp32 grad, bf16 grad) = {c}");
    }
}
