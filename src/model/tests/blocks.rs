//! The fused CPU sub-blocks (`blocks.rs`) against the primitive path of `forward.rs`: the loss,
//! the no-graph evaluation loss and the gradient of every parameter, at sequence lengths that do
//! and do not divide the attention kernel's block, one and several sequences, several head sizes.

use candle_core::DType;

use super::{rel_err, tokens};
use crate::model::{Gpt, GptConfig};

fn cfg(n_head: usize, n_embd: usize, seq_len: usize) -> GptConfig {
    GptConfig::record4_shaped(97, 2, n_head, n_embd, seq_len)
}

/// Largest |a − b| over the largest |b|.
fn max_rel(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f64 {
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    let m = b.abs().unwrap().max_all().unwrap();
    let f = |t: candle_core::Tensor| t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
    f(d) / f(m)
}

/// A config of (n_head, n_embd, seq_len).
type MakeCfg = fn(usize, usize, usize) -> GptConfig;

/// Track 3's architecture at the same shapes, with PyTorch's default init (Track 3's zero
/// projections and biases would leave most gradients exactly 0 at the first step).
fn track3_cfg(n_head: usize, n_embd: usize, seq_len: usize) -> GptConfig {
    GptConfig {
        init: crate::model::arch::Init::PytorchDefault,
        ..GptConfig::track3_shaped(97, 2, n_embd, n_embd / n_head, seq_len)
    }
}

/// Record 4's and Track 3's blocks (gains, biases, the q/k norm, ReLU², the softcapped and
/// summed head). Measured here: loss rel ≤ 2e-7, gradients ≤ 1e-6 (fp32 rounding of other
/// summation orders).
#[test]
fn fused_blocks_match_the_primitive_path() {
    let shapes = [
        (2, 32, 16, 3),
        (4, 64, 70, 2),
        (1, 16, 65, 1),
        (3, 48, 128, 1),
    ];
    let archs: [(&str, MakeCfg); 2] = [("record4", cfg), ("track3", track3_cfg)];
    for ((arch, make), (n_head, n_embd, t, b)) in archs
        .iter()
        .flat_map(|a| shapes.iter().map(move |s| (a, *s)))
    {
        let c = make(n_head, n_embd, t);
        let mut model = Gpt::new(&c, &candle_core::Device::Cpu, 7).unwrap();
        let (x, y) = (tokens(b, t, 97, 1), tokens(b, t, 97, 2));
        let mut run = |fused: bool| {
            model.fused_blocks = fused;
            let loss = model.loss(&x, &y, DType::F32, None).unwrap();
            let grads = loss.backward().unwrap();
            let eval = model.eval_loss(&x, &y, DType::F32).unwrap() as f64;
            let gs: Vec<_> = model
                .vars()
                .iter()
                .map(|(n, v)| (n.clone(), grads.get(v.as_tensor()).unwrap().clone()))
                .collect();
            (loss.to_scalar::<f32>().unwrap() as f64, eval, gs)
        };
        let (want, want_eval, want_g) = run(false);
        let (got, got_eval, got_g) = run(true);
        let shape = format!("{arch} H{n_head} D{n_embd} T{t} B{b}");
        assert!(rel_err(got, want) < 1e-6, "{shape}: loss {got} vs {want}");
        assert!(
            rel_err(got_eval, want_eval) < 1e-6,
            "{shape}: eval {got_eval} vs {want_eval}"
        );
        for ((name, g), (_, w)) in got_g.iter().zip(&want_g) {
            let e = max_rel(g, w);
            println!("{shape} {name}: rel {e:.1e}");
            assert!(e < 1e-5, "{shape}: gradient of {name} off by {e:e}");
        }
    }
}
