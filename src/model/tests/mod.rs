//! Model tests, tiny shapes only. Golden numbers come from `scripts/golden_model.py`.

mod attention;
mod blocks;
mod checkpoint;
mod generate;
mod golden;
mod grads;
mod head;
mod track3;
mod xent;

use std::path::PathBuf;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};

use super::{Gpt, GptConfig, LayerInputSink};

pub(super) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The configuration of the golden fixture (scripts/golden_model.py).
pub(super) fn tiny_cfg() -> GptConfig {
    GptConfig::record4_shaped(97, 2, 2, 32, 16)
}

/// Pseudo-random (B, T) token ids below `vocab`, u32, from a seeded StdRng.
pub(super) fn tokens(b: usize, t: usize, vocab: usize, seed: u64) -> Tensor {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let v: Vec<u32> = (0..b * t)
        .map(|_| rng.random_range(0..vocab as u32))
        .collect();
    Tensor::from_vec(v, (b, t), &Device::Cpu).unwrap()
}

pub(super) fn rel_err(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs()
}

/// Records every call: name, shape, dtype, whether the tensor carries a graph, and its Frobenius norm.
#[derive(Default)]
pub(super) struct Recorder {
    pub(super) calls: Vec<(String, Vec<usize>, DType, bool, f64)>,
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

/// Bit patterns of an fp32 tensor, for exact comparisons.
pub(super) fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn record4_has_123_532_032_params_and_shapes_agree() {
    let cfg = GptConfig::record4();
    assert_eq!(cfg.num_params(), 123_532_032);
    for c in [cfg, tiny_cfg()] {
        let from_shapes: usize = c
            .param_shapes()
            .values()
            .map(|s| {
                assert_eq!(s.len(), 2, "record 4 has matrices only");
                s[0] * s[1]
            })
            .sum();
        assert_eq!(from_shapes, c.num_params());
        assert_eq!(c.param_shapes().len(), 1 + 4 * c.n_layer);
    }
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
    let err = model
        .logits(&too_long, DType::F32, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("17"), "{err}");
    let (idx, tgt) = (tokens(2, 4, 97, 0), tokens(2, 5, 97, 0));
    assert!(model.loss(&idx, &tgt, DType::F32, None).is_err());
    assert!(model
        .eval_loss(&idx, &tokens(2, 4, 97, 0), DType::U32)
        .is_err());
    let bad = GptConfig {
        n_head: 3,
        ..tiny_cfg()
    };
    assert!(Gpt::new(&bad, &Device::Cpu, 0).is_err());
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
