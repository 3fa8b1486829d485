//! Model tests, tiny shapes only. Golden numbers come from `scripts/golden_model.py`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use candle_core::{DType, Device, IndexOp, Tensor};

use super::{Gpt, GptConfig, LayerInputSink, LM_HEAD_ALIAS, WTE};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The configuration of the golden fixture (scripts/golden_model.py).
fn tiny_cfg() -> GptConfig {
    GptConfig {
        vocab_size: 97,
        n_layer: 2,
        n_head: 2,
        n_embd: 32,
        seq_len: 16,
        rope_base: 10000.0,
    }
}

/// Pseudo-random (B, T) token ids below `vocab`, u32, from a seeded StdRng.
fn tokens(b: usize, t: usize, vocab: usize, seed: u64) -> Tensor {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let v: Vec<u32> = (0..b * t).map(|_| rng.random_range(0..vocab as u32)).collect();
    Tensor::from_vec(v, (b, t), &Device::Cpu).unwrap()
}

fn rel_err(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs()
}

/// Records every call: name, shape, dtype, whether the tensor carries a graph, and its Frobenius norm.
#[derive(Default)]
struct Recorder {
    calls: Vec<(String, Vec<usize>, DType, bool, f64)>,
}

impl LayerInputSink for Recorder {
    fn record(&mut self, weight_name: &str, x: &Tensor) -> Result<()> {
        let norm = x.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()? as f64;
        self.calls.push((
            weight_name.to_string(),
            x.dims().to_vec(),
            x.dtype(),
            x.track_op(),
            norm,
        ));
        Ok(())
    }
}

#[test]
fn record4_has_123_532_032_params_and_shapes_agree() {
    let cfg = GptConfig::record4();
    assert_eq!(cfg.num_params(), 123_532_032);
    for c in [cfg, tiny_cfg()] {
        let from_shapes: usize = c.param_shapes().values().map(|(o, i)| o * i).sum();
        assert_eq!(from_shapes, c.num_params());
        assert_eq!(c.param_shapes().len(), 1 + 4 * c.n_layer);
    }
}

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
    // The fixture stores int64 (PyTorch's default); the model contract takes u32.
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
    let rms = (GOLDEN_LOGITS.iter().map(|l| l.3 * l.3).sum::<f64>() / GOLDEN_LOGITS.len() as f64).sqrt();
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
    let loss = model.loss(&idx, &targets, DType::F32, Some(&mut rec)).unwrap();
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
        let g = grads.get(model.vars()[name].as_tensor()).expect("gradient present");
        let got = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
        total += got;
        let got = got.sqrt();
        check(format!("grad norm {name}"), got, want);
    }
    let total = total.sqrt();
    check("total grad norm".into(), total, GOLDEN_GRAD_NORM_ALL);
    println!("golden: worst relative error {worst:.3e}");
}

#[test]
fn every_parameter_gets_a_finite_nonzero_gradient() {
    let cfg = tiny_cfg();
    let model = Gpt::new(&cfg, &Device::Cpu, 7).unwrap();
    let loss = model
        .loss(&tokens(2, 16, 97, 1), &tokens(2, 16, 97, 2), DType::F32, None)
        .unwrap();
    let grads = loss.backward().unwrap();
    assert_eq!(model.vars().len(), 1 + 4 * cfg.n_layer);
    for (name, var) in model.vars() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        assert_eq!(g.dims(), var.dims(), "{name}");
        let v: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{name}: non-finite gradient");
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
    assert_eq!(l32.to_bits(), e32.to_bits(), "eval_loss {e32} vs loss {l32}");
    // Untrained model: loss near ln(97) = 4.575.
    assert!((l32 - 97f32.ln()).abs() < 0.5, "{l32}");

    let l16 = model.loss(&idx, &tgt, DType::BF16, None).unwrap();
    assert_eq!(l16.dtype(), DType::F32, "loss stays fp32 under bf16 compute");
    let l16 = l16.to_scalar::<f32>().unwrap();
    let e16 = model.eval_loss(&idx, &tgt, DType::BF16).unwrap();
    assert_eq!(l16.to_bits(), e16.to_bits());
    // bf16 keeps 8 mantissa bits; the loss should still agree to ~1%.
    assert!(((l16 - l32) / l32).abs() < 1e-2, "bf16 loss {l16} vs fp32 {l32}");
    assert_ne!(l16.to_bits(), l32.to_bits(), "bf16 path must actually compute in bf16");
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
        expected.push((format!("transformer.h.{i}.attn.c_attn.weight"), vec![b * t, d]));
        expected.push((format!("transformer.h.{i}.attn.c_proj.weight"), vec![b * t, d]));
        expected.push((format!("transformer.h.{i}.mlp.c_fc.weight"), vec![b * t, d]));
        expected.push((format!("transformer.h.{i}.mlp.c_proj.weight"), vec![b * t, 4 * d]));
    }
    let got: Vec<(String, Vec<usize>)> = rec.calls.iter().map(|c| (c.0.clone(), c.1.clone())).collect();
    assert_eq!(got, expected);
    for (name, _, dtype, tracked, _) in &rec.calls {
        assert_eq!(*dtype, DType::F32, "{name}");
        assert!(!tracked, "{name}: sink input must be detached");
        assert!(model.vars().contains_key(name), "{name} is a parameter");
    }
    // Every input of a normed Linear has rms 1 per row, so its norm is sqrt(rows · d).
    let normed = ((b * t * d) as f64).sqrt();
    assert!(rel_err(rec.calls[0].4, normed) < 1e-3, "{} vs {normed}", rec.calls[0].4);

    // logits() feeds the sink too.
    let mut rec2 = Recorder::default();
    model.logits(&idx, DType::F32, Some(&mut rec2)).unwrap();
    assert_eq!(rec2.calls.len(), 4 * cfg.n_layer);
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn save_load_round_trip_is_bit_identical_and_accepts_lm_head_alias() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_cfg();
    let model = Gpt::new(&cfg, &Device::Cpu, 5).unwrap();
    let path = dir.path().join("m.safetensors");
    model.save_safetensors(&path).unwrap();
    let back = Gpt::from_safetensors(&cfg, &path, &Device::Cpu).unwrap();
    assert_eq!(
        back.vars().keys().collect::<Vec<_>>(),
        model.vars().keys().collect::<Vec<_>>()
    );
    for (name, v) in model.vars() {
        assert_eq!(bits(v.as_tensor()), bits(back.vars()[name].as_tensor()), "{name}");
    }

    // A PyTorch-style file naming the tied matrix lm_head.weight loads to the same model.
    let mut map: BTreeMap<String, Tensor> = model
        .vars()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_detached_tensor()))
        .collect();
    let wte = map.remove(WTE).unwrap();
    map.insert(LM_HEAD_ALIAS.to_string(), wte.clone());
    let alias = dir.path().join("alias.safetensors");
    candle_core::safetensors::save(&map.clone().into_iter().collect(), &alias).unwrap();
    let back = Gpt::from_safetensors(&cfg, &alias, &Device::Cpu).unwrap();
    assert_eq!(bits(&wte), bits(back.vars()[WTE].as_tensor()));

    // Both names present and different: refused.
    map.insert(WTE.to_string(), (wte + 1.0).unwrap());
    candle_core::safetensors::save(&map.into_iter().collect(), &alias).unwrap();
    let err = format!("{:#}", Gpt::from_safetensors(&cfg, &alias, &Device::Cpu).err().unwrap());
    assert!(
        err.contains("alias.safetensors") && err.contains(LM_HEAD_ALIAS),
        "{err}"
    );
}

#[test]
fn bad_checkpoints_give_errors_naming_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_cfg();
    let model = Gpt::new(&cfg, &Device::Cpu, 5).unwrap();
    let base: BTreeMap<String, Tensor> = model
        .vars()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_detached_tensor()))
        .collect();
    let name = "transformer.h.1.mlp.c_fc.weight";
    let load_err = |file: &str, map: BTreeMap<String, Tensor>| -> String {
        let p = dir.path().join(file);
        candle_core::safetensors::save(&map.into_iter().collect(), &p).unwrap();
        let err = Gpt::from_safetensors(&cfg, &p, &Device::Cpu)
            .err()
            .expect("load must fail");
        let msg = format!("{err:#}");
        assert!(msg.contains(file), "error does not name the file: {msg}");
        assert!(!msg.contains('\n'), "error is not one line: {msg}");
        msg
    };

    let mut m = base.clone();
    m.insert(
        name.into(),
        Tensor::zeros((4 * 32, 31), DType::F32, &Device::Cpu).unwrap(),
    );
    let msg = load_err("wrong_shape.safetensors", m);
    assert!(msg.contains(name) && msg.contains("shape"), "{msg}");

    let mut m = base.clone();
    m.remove(name);
    let msg = load_err("missing.safetensors", m);
    assert!(msg.contains(name) && msg.contains("missing"), "{msg}");

    let mut m = base.clone();
    m.insert(
        "transformer.h.2.attn.c_attn.weight".into(),
        Tensor::zeros((96, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    let msg = load_err("extra.safetensors", m);
    assert!(msg.contains("transformer.h.2.attn.c_attn.weight"), "{msg}");

    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file").unwrap();
    let msg = format!("{:#}", Gpt::from_safetensors(&cfg, &junk, &Device::Cpu).err().unwrap());
    assert!(msg.contains("junk.safetensors"), "{msg}");
}

#[test]
fn init_is_seeded_and_pytorch_default_uniform() {
    let cfg = tiny_cfg();
    let a = Gpt::new(&cfg, &Device::Cpu, 42).unwrap();
    let b = Gpt::new(&cfg, &Device::Cpu, 42).unwrap();
    let c = Gpt::new(&cfg, &Device::Cpu, 43).unwrap();
    for (name, v) in a.vars() {
        assert_eq!(
            bits(v.as_tensor()),
            bits(b.vars()[name].as_tensor()),
            "{name}: same seed differs"
        );
        assert_ne!(
            bits(v.as_tensor()),
            bits(c.vars()[name].as_tensor()),
            "{name}: seed ignored"
        );
        // U(±1/√fan_in): all values inside the bound, the extremes near it, variance bound²/3.
        let fan_in = v.dims()[1] as f32;
        let bound = 1.0 / fan_in.sqrt();
        let x: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let max = x.iter().fold(0f32, |m, y| m.max(y.abs()));
        assert!(
            max <= bound && max > 0.9 * bound,
            "{name}: max |w| {max} vs bound {bound}"
        );
        let var = x.iter().map(|y| (y * y) as f64).sum::<f64>() / x.len() as f64;
        let want = (bound * bound / 3.0) as f64;
        assert!(rel_err(var, want) < 0.1, "{name}: variance {var} vs {want}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let model = Gpt::new(&tiny_cfg(), &Device::Cpu, 1).unwrap();
    let too_long = tokens(1, 17, 97, 0);
    let err = model.logits(&too_long, DType::F32, None).err().unwrap().to_string();
    assert!(err.contains("17"), "{err}");
    let (idx, tgt) = (tokens(2, 4, 97, 0), tokens(2, 5, 97, 0));
    assert!(model.loss(&idx, &tgt, DType::F32, None).is_err());
    assert!(model.eval_loss(&idx, &tokens(2, 4, 97, 0), DType::U32).is_err());
    let bad = GptConfig {
        n_head: 3,
        ..tiny_cfg()
    };
    assert!(Gpt::new(&bad, &Device::Cpu, 0).is_err());
}

fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| (*x as f64) * (*y as f64)).sum();
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
    let g32 = model.loss(&idx, &tgt, DType::F32, None).unwrap().backward().unwrap();
    let g16 = model.loss(&idx, &tgt, DType::BF16, None).unwrap().backward().unwrap();
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

#[test]
fn rotary_and_mask_tables_are_built_once_per_length() {
    let model = Gpt::new(&tiny_cfg(), &Device::Cpu, 2).unwrap();
    for t in [8, 8, 16, 8] {
        model
            .eval_loss(&tokens(1, t, 97, 0), &tokens(1, t, 97, 1), DType::F32)
            .unwrap();
    }
    let cache = model.tables.lock().unwrap();
    let mut lens: Vec<usize> = cache.keys().copied().collect();
    lens.sort();
    assert_eq!(lens, [8, 16]);
}

#[test]
fn missing_checkpoint_file_is_a_one_line_error_naming_it() {
    let err = Gpt::from_safetensors(
        &tiny_cfg(),
        std::path::Path::new("/nonexistent/w.safetensors"),
        &Device::Cpu,
    )
    .err()
    .unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("/nonexistent/w.safetensors") && !msg.contains('\n'),
        "{msg}"
    );
}
