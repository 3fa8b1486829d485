//! The fused causal attention (`attention.rs`) against the composite path, values and the
//! gradients of q, k and v, at sequence lengths that do and do not divide the block size and at
//! several head sizes.

use candle_core::{DType, Device, Tensor, Var};

use crate::model::attention::{causal_attention, composite, BLOCK};
use crate::model::layers::causal_mask;

fn randn(shape: (usize, usize, usize, usize), scale: f32, seed: u64) -> Var {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
    Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
}

/// max |a − b| / max |b|, with the denominator floored at 0.1: at T = 1 the softmax is the
/// constant 1, so the true dq is zero and both paths give rounding noise around it.
fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let scalar = |x: Tensor| x.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
    let d = scalar((a - b).unwrap().abs().unwrap().max_all().unwrap());
    d / scalar(b.abs().unwrap().max_all().unwrap()).max(0.1)
}

/// Output and (dq, dk, dv) of `Σ w ∘ attention(q, k, v)` through one path.
fn run(fused: bool, qkv: &[Var; 3], w: &Tensor, t: usize) -> [Tensor; 4] {
    let [q, k, v] = qkv.each_ref().map(|x| x.as_tensor());
    let mask = causal_mask(t, &Device::Cpu).unwrap();
    let y = if fused {
        causal_attention(q, k, v, &mask).unwrap()
    } else {
        composite(q, k, v, &mask).unwrap()
    };
    let g = (&y * w).unwrap().sum_all().unwrap().backward().unwrap();
    let grad = |x: &Tensor| g.get(x).expect("gradient").clone();
    [y, grad(q), grad(k), grad(v)]
}

fn check(b: usize, h: usize, t: usize, hd: usize, scale: f32, tol: f64) {
    let shape = (b, h, t, hd);
    let qkv = [0, 1, 2].map(|i| randn(shape, scale, 10 * t as u64 + hd as u64 + i));
    let w = randn(shape, 1.0, 7).as_tensor().clone();
    let fused = run(true, &qkv, &w, t);
    let want = run(false, &qkv, &w, t);
    for (name, (a, e)) in ["out", "dq", "dk", "dv"]
        .iter()
        .zip(fused.iter().zip(&want))
    {
        let r = max_rel(a, e);
        assert!(
            r < tol,
            "T={t} hd={hd} scale={scale}: {name} rel err {r:.2e}"
        );
    }
}

#[test]
fn fused_matches_composite_across_lengths_and_head_sizes() {
    for t in [1, 5, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 7] {
        for hd in [8, 64] {
            check(2, 3, t, hd, 1.0, 1e-5);
        }
    }
    check(1, 2, 300, 32, 1.0, 1e-5);
}

/// Large scores (|s| up to ~60) make the running max move between key blocks, which the online
/// softmax must rescale for; the result still matches the composite softmax.
#[test]
fn fused_is_stable_for_peaked_scores() {
    check(1, 2, 2 * BLOCK + 3, 16, 2.0, 1e-4);
}

/// A strided (non-contiguous) input is made contiguous and gives the same result.
#[test]
fn fused_accepts_strided_inputs() {
    let (b, h, t, hd) = (2, 3, 9, 8);
    let x = randn((b, t, h, hd), 1.0, 3);
    let q = x.as_tensor().transpose(1, 2).unwrap();
    let mask = causal_mask(t, &Device::Cpu).unwrap();
    let got = causal_attention(&q, &q, &q, &mask).unwrap();
    let qc = q.contiguous().unwrap();
    let want = composite(&qc, &qc, &qc, &mask).unwrap();
    assert!(max_rel(&got, &want) < 1e-5);
}
