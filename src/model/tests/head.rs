//! The chunked head + cross-entropy (`head.rs`) against the unchunked logits and loss: values
//! and gradients, for chunk sizes that do and do not divide the token count.

use candle_core::{DType, Device, Tensor, Var};

use super::{rel_err, tiny_cfg, tokens};
use crate::model::head::{composite_rows_and_grad, head_loss, rows_and_grad, Head};
use crate::model::{xent, Gpt};

fn randn(shape: (usize, usize), seed: u64) -> Var {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let v: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    let d = d.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
    let m = b.abs().unwrap().max_all().unwrap();
    d / m.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// 45 tokens (B = 3, T = 15), vocab 97, width 16; chunks of 1, 7, 15, 45 and 64 tokens. The loss
/// and the gradients of h and W match the unchunked head to fp32 rounding.
#[test]
fn chunked_loss_and_gradients_equal_unchunked() {
    let (n, v, d) = (45, 97, 16);
    let h = randn((n, d), 1);
    let w = randn((v, d), 2);
    let targets = tokens(3, 15, v, 3);
    let logits = h.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
    let want = xent::cross_entropy(&logits.reshape((3, 15, v)).unwrap(), &targets).unwrap();
    let want_g = want.backward().unwrap();
    let want = want.to_scalar::<f32>().unwrap() as f64;
    let flat = targets.flatten_all().unwrap();
    let head = Head {
        w: w.as_tensor().clone(),
        b: None,
        softcap: 0.0,
        sum: false,
    };
    for chunk in [1, 7, 15, 45, 64] {
        let got = head_loss(h.as_tensor(), &head, &flat, DType::F32, chunk, true).unwrap();
        let g = got.backward().unwrap();
        let got = got.to_scalar::<f32>().unwrap() as f64;
        assert!(rel_err(got, want) < 1e-6, "chunk {chunk}: {got} vs {want}");
        for (name, var) in [("h", &h), ("w", &w)] {
            let e = max_rel(
                g.get(var.as_tensor()).unwrap(),
                want_g.get(var.as_tensor()).unwrap(),
            );
            assert!(e < 1e-5, "chunk {chunk}: grad of {name} off by {e:e}");
        }
        let plain = head_loss(h.as_tensor(), &head, &flat, DType::F32, chunk, false).unwrap();
        assert!(!plain.track_op(), "a loss without gradient builds no graph");
        let plain = plain.to_scalar::<f32>().unwrap() as f64;
        assert!(
            rel_err(plain, want) < 1e-6,
            "chunk {chunk}: eval {plain} vs {want}"
        );
    }
}

/// The per-chunk numerics used off the CPU (candle_nn's composite, differentiated by candle)
/// agree with the fused CPU pass.
#[test]
fn composite_chunk_equals_fused_chunk() {
    let logits = (randn((9, 97), 4).as_tensor() * 6.0).unwrap();
    let targets = tokens(1, 9, 97, 5).flatten_all().unwrap();
    let (rows_a, dl_a) = rows_and_grad(&logits, &targets, 0.125).unwrap();
    let (rows_b, dl_b) = composite_rows_and_grad(&logits, &targets, 0.125).unwrap();
    assert!(max_rel(&rows_a, &rows_b) < 1e-6);
    assert!(max_rel(&dl_a, &dl_b) < 1e-5);
}

/// The whole model: `Gpt::loss` (chunked) against `Gpt::loss_unchunked`, value and every
/// parameter's gradient.
#[test]
fn model_loss_equals_unchunked_loss() {
    let cfg = tiny_cfg();
    let model = Gpt::new(&cfg, &Device::Cpu, 7).unwrap();
    let idx = tokens(2, 16, cfg.vocab_size, 8);
    let tgt = tokens(2, 16, cfg.vocab_size, 9);
    let a = model.loss(&idx, &tgt, DType::F32, None).unwrap();
    let b = model.loss_unchunked(&idx, &tgt, DType::F32, None).unwrap();
    let (ga, gb) = (a.backward().unwrap(), b.backward().unwrap());
    let (a, b) = (a.to_scalar::<f32>().unwrap(), b.to_scalar::<f32>().unwrap());
    assert!(rel_err(a as f64, b as f64) < 1e-6, "{a} vs {b}");
    for (name, var) in model.vars() {
        let e = max_rel(
            ga.get(var.as_tensor()).unwrap(),
            gb.get(var.as_tensor()).unwrap(),
        );
        assert!(e < 1e-5, "{name}: gradient off by {e:e}");
    }
}
