//! The fused CPU cross-entropy (`model/xent.rs`) against candle_nn's composite path.

use candle_core::{DType, Device, Tensor, Var};

use crate::model::xent::cross_entropy_rows;
use crate::model::Gpt;

/// (N, V) logits, uniform in ±4, except row 0 uniform in ±50 and row 1 whose target holds the row
/// max (60). Targets below `v`.
fn case(n: usize, v: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let mut x: Vec<f32> = (0..n * v).map(|_| rng.random_range(-4.0f32..4.0)).collect();
    let t: Vec<u32> = (0..n).map(|_| rng.random_range(0..v as u32)).collect();
    // Large magnitudes: row 0 spans ±50.
    for y in &mut x[..v] {
        *y = rng.random_range(-50.0f32..50.0);
    }
    // Row 1: the target holds the max (and a large one).
    x[v + t[1] as usize] = 60.0;
    (x, t)
}

/// Loss rows and grad of the mean, for the fused op or the composite.
fn loss_and_grad(x: &[f32], t: &[u32], n: usize, v: usize, fused: bool) -> (Vec<f32>, Vec<f32>) {
    let dev = Device::Cpu;
    let var = Var::from_tensor(&Tensor::from_slice(x, (n, v), &dev).unwrap()).unwrap();
    let tg = Tensor::from_slice(t, n, &dev).unwrap();
    let rows = if fused {
        cross_entropy_rows(var.as_tensor(), &tg).unwrap()
    } else {
        let lsm = candle_nn::ops::log_softmax(var.as_tensor(), 1).unwrap();
        lsm.gather(&tg.unsqueeze(1).unwrap(), 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .neg()
            .unwrap()
    };
    let mean = rows.mean_all().unwrap();
    let grads = mean.backward().unwrap();
    let g = grads.get(var.as_tensor()).unwrap();
    (
        rows.to_vec1().unwrap(),
        g.flatten_all().unwrap().to_vec1().unwrap(),
    )
}

/// f64 reference: per-row loss and the gradient of the mean.
fn reference(x: &[f32], t: &[u32], n: usize, v: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut loss, mut grad) = (vec![0f64; n], vec![0f64; n * v]);
    for i in 0..n {
        let row = &x[i * v..(i + 1) * v];
        let max = row
            .iter()
            .map(|&y| y as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let lse = max
            + row
                .iter()
                .map(|&y| (y as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let ti = t[i] as usize;
        loss[i] = lse - row[ti] as f64;
        let mut others = 0.0;
        for j in 0..v {
            let p = (row[j] as f64 - lse).exp();
            grad[i * v + j] = p / n as f64;
            if j != ti {
                others += p;
            }
        }
        grad[i * v + ti] = -others / n as f64;
    }
    (loss, grad)
}

#[test]
fn fused_loss_and_grad_equal_composite() {
    for (n, v, seed) in [(6, 97, 1), (5, 50257, 2), (33, 1000, 3)] {
        let (x, t) = case(n, v, seed);
        let (lf, gf) = loss_and_grad(&x, &t, n, v, true);
        let (lc, gc) = loss_and_grad(&x, &t, n, v, false);
        let (lr, gr) = reference(&x, &t, n, v);
        // Per-row loss to 1e-6 relative (absolute below 1: row 1's loss is ≈ e^-56).
        for i in 0..n {
            let tol = 1e-6 * lc[i].abs().max(1.0) as f64;
            assert!(
                (lf[i] - lc[i]).abs() as f64 <= tol,
                "v={v} row {i}: fused {} vs composite {}",
                lf[i],
                lc[i]
            );
            assert!((lf[i] as f64 - lr[i]).abs() <= tol, "v={v} row {i}: vs f64");
        }
        // Gradient of the mean: every entry of row i lies in [−g_i, g_i] with g_i = 1/N, so the
        // error is relative to g_i (row 1's off-target entries are ~1e-27, pure rounding noise).
        let gi = 1.0 / n as f64;
        let mut worst = (0f64, 0f64, 0f64);
        for k in 0..n * v {
            let (f, c, r) = (gf[k] as f64, gc[k] as f64, gr[k]);
            worst.0 = worst.0.max((f - c).abs() / gi);
            worst.1 = worst.1.max((f - r).abs() / gi);
            worst.2 = worst.2.max((c - r).abs() / gi);
        }
        eprintln!(
            "v={v}: grad err / g_i: fused-composite {:.2e}, fused-f64 {:.2e}, composite-f64 {:.2e}",
            worst.0, worst.1, worst.2
        );
        assert!(worst.0 <= 1e-6 && worst.1 <= 1e-6, "v={v}: {worst:?}");
        // The confident row: the target entry −g·Σ_{j≠t} p_j keeps f32 relative accuracy.
        let k = v + t[1] as usize;
        assert!(gr[k] < 0.0 && (gf[k] as f64 - gr[k]).abs() <= 1e-5 * gr[k].abs());
        // Each grad row sums to ~0 (softmax − onehot).
        for i in 0..n {
            let s: f64 = gf[i * v..(i + 1) * v].iter().map(|&y| y as f64).sum();
            assert!(s.abs() < 1e-6 * gi, "row {i} grad sums to {s}");
        }
    }
}

#[test]
fn out_of_range_target_is_an_error() {
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 10), DType::F32, &dev).unwrap();
    let t = Tensor::new(&[3u32, 10], &dev).unwrap();
    let err = cross_entropy_rows(&x, &t).err().unwrap().to_string();
    assert!(err.contains("out of range"), "{err}");
    // Through the model's loss as well.
    let model = Gpt::new(&super::tiny_cfg(), &dev, 1).unwrap();
    let idx = super::tokens(1, 4, 97, 0);
    let bad = Tensor::new(&[[1u32, 2, 97, 3]], &dev).unwrap();
    assert!(model.loss(&idx, &bad, DType::F32, None).is_err());
    // Wrong dtype / non-contiguous are rejected by the op, not a panic.
    assert!(cross_entropy_rows(&x.to_dtype(DType::F64).unwrap(), &t).is_err());
    let xt = Tensor::zeros((10, 2), DType::F32, &dev)
        .unwrap()
        .t()
        .unwrap();
    assert!(cross_entropy_rows(&xt, &Tensor::new(&[1u32, 2], &dev).unwrap()).is_err());
}

/// The accumulator choice, measured: ln Σ exp over a 50257-wide row against an f64 reference.
#[test]
fn f32_accumulation_error_is_measured() {
    let (x, _) = case(8, 50257, 9);
    let (mut worst32, mut worst_fused) = (0f64, 0f64);
    for row in x.chunks_exact(50257).skip(1) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exact: f64 = row
            .iter()
            .map(|&y| ((y - max) as f64).exp())
            .sum::<f64>()
            .ln();
        let s32: f32 = row.iter().map(|&y| (y - max).exp()).sum();
        let s64: f64 = row.iter().map(|&y| (y - max).exp() as f64).sum();
        worst32 = worst32.max((s32.ln() as f64 - exact).abs());
        worst_fused = worst_fused.max(((s64.ln() as f32) as f64 - exact).abs());
    }
    eprintln!("ln Σexp abs err: f32 accumulate {worst32:e}, f64 accumulate {worst_fused:e}");
    assert!(worst_fused < 1e-6, "{worst_fused:e}");
    assert!(worst_fused <= worst32);
}
