//! Golden comparison against the PyTorch reference (`scripts/gpt_ref.py`).

use candle_core::{DType, Device, IndexOp, Tensor};

use super::*;
use crate::model::Gpt;

// `.venv/bin/python scripts/golden_model.py` (torch 2.15.0 CPU, fp32) printed:
// loss 4.86955261
// logit b=0 t=0 v=0 -0.374468893
// logit b=0 t=0 v=1 0.443727553
// logit b=0 t=0 v=50 -0.225128129
// logit b=0 t=0 v=96 -0.669126928
// logit b=0 t=15 v=0 0.34836781
// logit b=0 t=15 v=1 -0.0350680947
// logit b=0 t=15 v=50 0.676664829
// logit b=0 t=15 v=96 -0.294864208
// logit b=1 t=0 v=0 0.125814632
// logit b=1 t=0 v=1 -0.282277703
// logit b=1 t=0 v=50 0.179943442
// logit b=1 t=0 v=96 0.168703765
// logit b=1 t=15 v=0 0.0368567668
// logit b=1 t=15 v=1 0.394060314
// logit b=1 t=15 v=50 0.0263908356
// logit b=1 t=15 v=96 -0.622986197
// gradnorm transformer.h.0.attn.c_attn.weight 1.68385291
// gradnorm transformer.h.0.attn.c_proj.weight 1.51727378
// gradnorm transformer.h.0.mlp.c_fc.weight 1.32475615
// gradnorm transformer.h.0.mlp.c_proj.weight 2.50928617
// gradnorm transformer.h.1.attn.c_attn.weight 0.664816201
// gradnorm transformer.h.1.attn.c_proj.weight 0.51025331
// gradnorm transformer.h.1.mlp.c_fc.weight 0.591104746
// gradnorm transformer.h.1.mlp.c_proj.weight 1.14439547
// gradnorm transformer.wte.weight 3.93519545
// gradnorm all 5.57100748
// inputnorm transformer.h.0.attn.c_attn.weight 31.9983845
// inputnorm transformer.h.0.attn.c_proj.weight 16.2825165
// inputnorm transformer.h.0.mlp.c_fc.weight 31.9994869
// inputnorm transformer.h.0.mlp.c_proj.weight 20.9714184
// inputnorm transformer.h.1.attn.c_attn.weight 31.9997578
// inputnorm transformer.h.1.attn.c_proj.weight 15.7211618
// inputnorm transformer.h.1.mlp.c_fc.weight 31.9997902
// inputnorm transformer.h.1.mlp.c_proj.weight 21.7471123
const GOLDEN_LOSS: f64 = 4.86955261;
const GOLDEN_LOGITS: [(usize, usize, usize, f64); 16] = [
    (0, 0, 0, -0.374468893),
    (0, 0, 1, 0.443727553),
    (0, 0, 50, -0.225128129),
    (0, 0, 96, -0.669126928),
    (0, 15, 0, 0.34836781),
    (0, 15, 1, -0.0350680947),
    (0, 15, 50, 0.676664829),
    (0, 15, 96, -0.294864208),
    (1, 0, 0, 0.125814632),
    (1, 0, 1, -0.282277703),
    (1, 0, 50, 0.179943442),
    (1, 0, 96, 0.168703765),
    (1, 15, 0, 0.0368567668),
    (1, 15, 1, 0.394060314),
    (1, 15, 50, 0.0263908356),
    (1, 15, 96, -0.622986197),
];
const GOLDEN_GRAD_NORMS: [(&str, f64); 9] = [
    ("transformer.h.0.attn.c_attn.weight", 1.68385291),
    ("transformer.h.0.attn.c_proj.weight", 1.51727378),
    ("transformer.h.0.mlp.c_fc.weight", 1.32475615),
    ("transformer.h.0.mlp.c_proj.weight", 2.50928617),
    ("transformer.h.1.attn.c_attn.weight", 0.664816201),
    ("transformer.h.1.attn.c_proj.weight", 0.51025331),
    ("transformer.h.1.mlp.c_fc.weight", 0.591104746),
    ("transformer.h.1.mlp.c_proj.weight", 1.14439547),
    ("transformer.wte.weight", 3.93519545),
];
const GOLDEN_GRAD_NORM_ALL: f64 = 5.57100748;
const GOLDEN_INPUT_NORMS: [(&str, f64); 8] = [
    ("transformer.h.0.attn.c_attn.weight", 31.9983845),
    ("transformer.h.0.attn.c_proj.weight", 16.2825165),
    ("transformer.h.0.mlp.c_fc.weight", 31.9994869),
    ("transformer.h.0.mlp.c_proj.weight", 20.9714184),
    ("transformer.h.1.attn.c_attn.weight", 31.9997578),
    ("transformer.h.1.attn.c_proj.weight", 15.7211618),
    ("transformer.h.1.mlp.c_fc.weight", 31.9997902),
    ("transformer.h.1.mlp.c_proj.weight", 21.7471123),
];

fn golden_batch(dev: &Device) -> (Tensor, Tensor) {
    let batch = candle_core::safetensors::load(fixture("tiny_gpt_batch.safetensors"), dev).unwrap();
    // The fixture stores int64 (PyTorch's default); the model takes u32.
    let idx = batch["idx"].to_dtype(DType::U32).unwrap();
    let targets = batch["targets"].to_dtype(DType::U32).unwrap();
    (idx, targets)
}

#[test]
fn golden_matches_pytorch() {
    let dev = Device::Cpu;
    let model = Gpt::from_safetensors(&tiny_cfg(), &fixture("tiny_gpt.safetensors"), &dev).unwrap();
    let (idx, targets) = golden_batch(&dev);
    let tol = 1e-4;
    let mut worst = 0f64; // largest error seen, printed for the record (--nocapture)

    let logits = model.logits(&idx, DType::F32, None).unwrap();
    assert_eq!(logits.dims(), [2, 16, 97]);
    // Logits near zero (e.g. -0.035) carry ~1e-6 absolute fp32 rounding from the whole forward pass,
    // which is 3e-5..6e-5 of their own size; their error is measured against max(|logit|, rms of the
    // golden logits) so that cancellation noise does not decide the test. Everything else is plain
    // relative error.
    let rms =
        (GOLDEN_LOGITS.iter().map(|l| l.3 * l.3).sum::<f64>() / GOLDEN_LOGITS.len() as f64).sqrt();
    for (b, t, v, want) in GOLDEN_LOGITS {
        let got = logits.i((b, t, v)).unwrap().to_scalar::<f32>().unwrap() as f64;
        let e = (got - want).abs() / want.abs().max(rms);
        worst = worst.max(e);
        assert!(
            e <= tol,
            "logit ({b},{t},{v}): {got} vs torch {want} (scaled err {e:.2e})"
        );
    }

    let mut check = |what: String, got: f64, want: f64| {
        let e = rel_err(got, want);
        worst = worst.max(e);
        assert!(e <= tol, "{what}: {got} vs torch {want} (rel err {e:.2e})");
    };
    let mut rec = Recorder::default();
    let loss = model
        .loss(&idx, &targets, DType::F32, Some(&mut rec))
        .unwrap();
    let got = loss.to_scalar::<f32>().unwrap() as f64;
    check("loss".into(), got, GOLDEN_LOSS);

    let mut recorded: Vec<(String, f64)> = rec.calls.iter().map(|c| (c.0.clone(), c.4)).collect();
    recorded.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(recorded.len(), GOLDEN_INPUT_NORMS.len());
    for ((name, got), (want_name, want)) in recorded.iter().zip(GOLDEN_INPUT_NORMS) {
        assert_eq!(name, want_name);
        check(format!("input norm {name}"), *got, want);
    }

    let grads = loss.backward().unwrap();
    let mut total = 0.0;
    for (name, want) in GOLDEN_GRAD_NORMS {
        let g = grads
            .get(model.vars()[name].as_tensor())
            .expect("gradient present");
        let got = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        total += got;
        let got = got.sqrt();
        check(format!("grad norm {name}"), got, want);
    }
    let total = total.sqrt();
    check("total grad norm".into(), total, GOLDEN_GRAD_NORM_ALL);
    println!("golden: worst relative error {worst:.3e}");
}
