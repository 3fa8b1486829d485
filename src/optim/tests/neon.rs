//! Neon tests: the top-triplet solver vs numpy's full SVD, warm starts, the F* τ rule and update
//! vs the closed form on the full spectrum, and one Neon step (see `scripts/golden_optim.py`).

use std::collections::BTreeMap;

use anyhow::Result;
use candle_core::{Tensor, Var};

use super::{g, golden, rel};
use crate::optim::neon::fstar_direction;
use crate::optim::topk::{fstar_tau, top_singular};
use crate::optim::*;

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    (a.flatten_all().unwrap() * b.flatten_all().unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64
}

// golden_optim.py:
// neon.rand.s    shape=(16,) sum= 7.158080363e+01 first= 8.176089467e+00
// neon.illcond.s shape=(16,) sum= 1.661424688e+00 first= 1.000000002e+00
/// σ₁, u₁, v₁ by subspace iteration equal numpy's SVD (1e-5) on a random matrix (small gap
/// σ₁/σ₂) and an ill-conditioned one (σ from 1 down to 1e-6); a warm start from the previous
/// solve converges in fewer iterations on a perturbed matrix than a cold start.
#[test]
fn top_triplet_matches_svd_and_warm_start_is_faster() -> Result<()> {
    let f = golden();
    for key in ["rand", "illcond"] {
        let m = g(&f, &format!("neon.{key}.m"));
        let top = top_singular(&m, 1, 4, None, 500, 1e-6)?;
        let s1 = g(&f, &format!("neon.{key}.s")).to_vec1::<f32>()?[0] as f64;
        assert!(
            (top.s[0] - s1).abs() / s1 < 1e-5,
            "{key}: σ₁ {} vs {s1}",
            top.s[0]
        );
        let cu = dot(&top.u, &g(&f, &format!("neon.{key}.u1"))).abs();
        let cv = dot(&top.v, &g(&f, &format!("neon.{key}.v1"))).abs();
        assert!(
            cu > 1.0 - 1e-5 && cv > 1.0 - 1e-5,
            "{key}: |⟨u,u₁⟩| {cu} |⟨v,v₁⟩| {cv}"
        );
        // A next-step-like matrix: the same plus a perturbation of ~2% of σ₁ in spectral norm
        // (‖perturb‖₂ ≈ 0.05·(√24 + √16) ≈ 0.45).
        let m2 = (&m + (g(&f, "neon.perturb") * (0.02 * s1 / 0.45))?)?;
        // Single-vector power iteration (no oversampling) so the rate is (σ₂/σ₁)² and the start
        // matters; with oversampling the ill-conditioned case converges in 2 iterations anyway.
        let prev = top_singular(&m, 1, 0, None, 500, 1e-6)?;
        let cold = top_singular(&m2, 1, 0, None, 500, 1e-6)?;
        let warm = top_singular(&m2, 1, 0, Some(&prev.block), 500, 1e-6)?;
        assert!((cold.s[0] - warm.s[0]).abs() / cold.s[0] < 1e-5);
        assert!(
            warm.iters < cold.iters,
            "{key}: warm {} iterations vs cold {}",
            warm.iters,
            cold.iters
        );
    }
    Ok(())
}

// golden_optim.py (σ = 5, 4, 3.5, 3, 1, …):
// # F*: k = 3, tau = 3.125000011
// fstar.dir shape=(20, 14) sum=-7.215981473e-01 first= 5.840615200e-02
/// τ by the growing-k rule and the F* direction from 8 computed triplets equal the closed form on
/// numpy's full spectrum; τ solves Σ[σ − τ]₊ = τ.
#[test]
fn fstar_tau_and_direction_match_closed_form() -> Result<()> {
    let f = golden();
    let want = g(&f, "fstar.tau").to_vec1::<f32>()?;
    let (dir, k, _, truncated, _) = fstar_direction(&g(&f, "fstar.m"), 8, 4, None, 500, 1e-6)?;
    assert_eq!(k, want[1] as usize);
    assert!(!truncated);
    let r = rel(&dir, &g(&f, "fstar.dir"));
    assert!(r < 1e-5, "F* direction rel {r}");
    let (k, tau, ran_out) = fstar_tau(&[5.0, 4.0, 3.5, 3.0, 1.0, 0.5]);
    assert_eq!((k, ran_out), (3, false));
    assert!((tau - 3.125).abs() < 1e-12);
    let excess: f64 = [5.0, 4.0, 3.5, 3.0, 1.0f64]
        .iter()
        .map(|s| (s - tau).max(0.0))
        .sum();
    assert!((excess - tau).abs() < 1e-12);
    // A flat spectrum exhausts the computed triplets: the caller must know.
    assert!(fstar_tau(&[1.0, 1.0, 1.0]).2);
    Ok(())
}

// golden_optim.py (lr 0.1, √32 scale, μ 0.95 Nesterov, two steps):
// neonstep.w2 shape=(32, 8) sum= 1.856102924e+00 first= 1.850880199e-02
/// Two LMO Neon steps (momentum, Nesterov, rank-1 u₁v₁ᵀ, √max(rows, cols) scale) match numpy.
#[test]
fn neon_lmo_steps_match_numpy() -> Result<()> {
    let f = golden();
    let name = "transformer.h.0.mlp.c_fc.weight";
    let params: BTreeMap<String, Var> =
        [(name.to_string(), Var::from_tensor(&g(&f, "neonstep.w0"))?)].into();
    let cfg = NeonConfig {
        lr: 0.1,
        iters: 500,
        tol: 1e-6,
        ..NeonConfig::default()
    };
    let mut opt = Neon::new("neon", cfg, params.clone())?;
    for k in ["g1", "g2"] {
        opt.step(
            &[(name.to_string(), g(&f, &format!("neonstep.{k}")))].into(),
            0.1,
        )?;
    }
    let r = rel(params[name].as_tensor(), &g(&f, "neonstep.w2"));
    assert!(r < 1e-5, "Neon two steps rel {r}");
    Ok(())
}

/// Diagnostics report what the groups did: with `max_rank` 1 every F* matrix is truncated and has
/// rank 1; Neon counts its solver iterations; Newton-Muon counts the weights that got no layer
/// input on its step-0 refresh. The AdamW head reports nothing.
#[test]
fn diagnostics_report_truncation_iterations_and_missing_inputs() -> Result<()> {
    let p = super::toy_params(&candle_core::Device::Cpu);
    let mut cfg = OptimConfig {
        name: Method::NeonFStar,
        ..OptimConfig::default()
    };
    cfg.neon_fstar.max_rank = 1;
    let mut set = build(&cfg, &p, DType::F32)?;
    assert_eq!(set.diagnostics()["neon_fstar.truncated"], 0.0);
    set.step(&super::toy_grads(&p, 0), 1.0)?;
    let d = set.diagnostics();
    let keys: Vec<&str> = d.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "neon_fstar.rank_max",
            "neon_fstar.rank_mean",
            "neon_fstar.rank_min",
            "neon_fstar.truncated"
        ]
    );
    assert_eq!(d["neon_fstar.truncated"], 4.0);
    assert_eq!(
        (d["neon_fstar.rank_min"], d["neon_fstar.rank_max"]),
        (1.0, 1.0)
    );

    cfg.name = Method::Neon;
    let mut set = build(&cfg, &p, DType::F32)?;
    set.step(&super::toy_grads(&p, 0), 1.0)?;
    assert!(set.diagnostics()["neon.solver_iterations"] >= 1.0);

    cfg.name = Method::NewtonMuon;
    // A refresh on this first step, where no layer input was recorded.
    cfg.newton_muon.refresh = 1;
    let mut set = build(&cfg, &p, DType::F32)?;
    set.step(&super::toy_grads(&p, 0), 1.0)?;
    let d = set.diagnostics();
    assert_eq!(d["newton_muon.missing_inputs"], 4.0);
    assert_eq!(d["newton_muon.cholesky_failures"], 0.0);
    assert_eq!(d.len(), 2);
    Ok(())
}
