//! Optimizer tests against `scripts/golden_optim.py` (float64 numpy, full SVD), whose inputs and
//! expected outputs live in `tests/fixtures/optim_golden.npz`. Tolerance: ‖rust − numpy‖_F /
//! ‖numpy‖_F ≤ 1e-5 in fp32. Printed summaries of the script are pasted next to each test.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};

use super::linalg::symmetric_eigen;
use super::newton_schulz::{newton_schulz, NsForm, NsSpec};
use super::*;

mod neon;
mod ns;
mod spectral;
mod state;

use state::{toy_grads, toy_params};

pub(super) fn golden() -> HashMap<String, Tensor> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/optim_golden.npz"
    );
    Tensor::read_npz(path)
        .expect("run scripts/golden_optim.py to create the fixture")
        .into_iter()
        .collect()
}

pub(super) fn g(f: &HashMap<String, Tensor>, k: &str) -> Tensor {
    f.get(k)
        .unwrap_or_else(|| panic!("fixture lacks {k}"))
        .clone()
}

/// ‖a − b‖_F / ‖b‖_F.
pub(super) fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap();
    let b = b.to_dtype(DType::F64).unwrap();
    let d = (&a - &b)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let n = b
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    (d / n).sqrt()
}

fn vars(
    f: &HashMap<String, Tensor>,
    prefix: &str,
    names: &[&str],
    suffix: &str,
) -> BTreeMap<String, Var> {
    names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                Var::from_tensor(&g(f, &format!("{prefix}.{n}.{suffix}"))).unwrap(),
            )
        })
        .collect()
}

fn grads(f: &HashMap<String, Tensor>, prefix: &str, names: &[&str], suffix: &str) -> Grads {
    names
        .iter()
        .map(|n| (n.to_string(), g(f, &format!("{prefix}.{n}.{suffix}"))))
        .collect()
}

const BLOCK: [&str; 4] = [
    "transformer.h.0.attn.c_attn.weight",
    "transformer.h.0.attn.c_proj.weight",
    "transformer.h.0.mlp.c_fc.weight",
    "transformer.h.0.mlp.c_proj.weight",
];

// golden_optim.py:
// ns.u      shape=(20, 12) sum= 6.395275524e+00 first=-6.165139079e-01
// ns.out    shape=(20, 12) sum= 8.745628673e-01 first=-8.701230185e-02
// # NS5 singular values in [0.6880, 1.1341]; ||NS5 - msgn||_F/||msgn||_F = 0.1701
/// NS5 equals the numpy NS5 (tall input, so the transpose path runs) and is msgn's
/// approximation: in the SVD basis of U it is diagonal with values in ~[0.7, 1.2].
#[test]
fn newton_schulz_matches_numpy_and_svd() -> Result<()> {
    let f = golden();
    let o = newton_schulz(
        &g(&f, "ns.u"),
        NsSpec::record4(5, NsForm::Record4),
        DType::F32,
    )?;
    let r = rel(&o, &g(&f, "ns.out"));
    assert!(r < 1e-5, "NS5 vs numpy rel {r}");
    // D = Pᵀ·O·Q must be diagonal: the singular vectors of NS5(U) are those of U.
    let d = g(&f, "ns.p")
        .t()?
        .matmul(&o)?
        .matmul(&g(&f, "ns.q"))?
        .to_dtype(DType::F64)?
        .to_vec2::<f64>()?;
    let (mut off, mut diag) = (0.0, Vec::new());
    for (i, row) in d.iter().enumerate() {
        for (j, x) in row.iter().enumerate() {
            if i == j {
                diag.push(*x);
            } else {
                off += x * x;
            }
        }
    }
    assert!(off.sqrt() < 1e-4, "off-diagonal {}", off.sqrt());
    for s in &diag {
        assert!(
            (0.65..=1.2).contains(s),
            "singular value {s} of NS5 outside [0.65, 1.2]"
        );
    }
    // Batched NS equals per-matrix NS.
    let u = g(&f, "ns.u");
    let both = newton_schulz(
        &Tensor::stack(&[&u, &(&u * 2.0)?], 0)?,
        NsSpec::record4(5, NsForm::Record4),
        DType::F32,
    )?;
    assert!(rel(&both.get(1)?, &o) < 1e-5);
    // The GPU path runs in bf16 (8-bit mantissa, rounding 4e-3 per op, amplified by the
    // polynomial's slope ~3.4 at small singular values over 5 steps): measured rel 0.060.
    let half = newton_schulz(&u, NsSpec::record4(5, NsForm::Record4), DType::BF16)?;
    assert_eq!(half.dtype(), DType::F32);
    let r = rel(&half, &o);
    assert!(r < 0.1, "bf16 NS5 vs f32 rel {r}");
    Ok(())
}

// golden_optim.py (two steps, lr 0.1, wd 0.01, μ 0.95 Nesterov):
// muon.record4.transformer.h.0.attn.c_attn.weight.w2 shape=(24, 8) sum= 2.912276173e+00 first= 1.404242324e-01
// muon.record4.transformer.h.0.attn.c_proj.weight.w2 shape=(8, 8)  sum= 1.498979978e+00 first=-9.262472289e-02
// muon.record4.transformer.h.0.mlp.c_fc.weight.w2    shape=(32, 8) sum=-6.117098983e+00 first= 2.589263528e-02
// muon.record4.transformer.h.0.mlp.c_proj.weight.w2  shape=(8, 32) sum= 3.018492444e+00 first=-1.979910157e-01
// muon.original.transformer.h.0.attn.c_attn.weight.w2 shape=(24, 8) sum= 1.903560368e-02 first=-1.634716843e-03
// muon.original.transformer.h.0.mlp.c_fc.weight.w2   shape=(32, 8) sum= 2.313083340e-04 first=-7.718439263e-02
/// Two Muon steps (momentum, Nesterov, record-4 QKV split and √max scale, decay) and the
/// "original" scale (no split, √max(1, rows/cols)) match numpy.
#[test]
fn muon_two_steps_match_numpy() -> Result<()> {
    let f = golden();
    for (scale, sc) in [("record4", Scale::Record4), ("original", Scale::Original)] {
        let prefix = format!("muon.{scale}");
        let params = vars(&f, &prefix, &BLOCK, "w0");
        let cfg = MuonConfig {
            lr: 0.1,
            weight_decay: 0.01,
            scale: sc,
            ..MuonConfig::default()
        };
        let mut opt = Muon::new("muon", cfg, params.clone(), DType::F32)?;
        opt.step(&grads(&f, &prefix, &BLOCK, "g1"), 0.1)?;
        opt.step(&grads(&f, &prefix, &BLOCK, "g2"), 0.1)?;
        for n in BLOCK {
            let r = rel(params[n].as_tensor(), &g(&f, &format!("{prefix}.{n}.w2")));
            assert!(r < 1e-5, "{scale} {n}: rel {r}");
        }
    }
    Ok(())
}

// golden_optim.py (lr 0.01, betas (0.9, 0.95), eps 1e-8, wd 0.1):
// adamw.transformer.wte.weight.w1 shape=(6, 4) sum=-8.271187038e+00 first= 2.346188362e-01
// adamw.transformer.wte.weight.w2 shape=(6, 4) sum=-8.279355110e+00 first= 2.423726262e-01
// adamw.transformer.h.0.mlp.c_fc.weight.w1 shape=(6, 4) sum= 3.073116400e-01 first=-2.071398488e-02
// adamw.transformer.h.0.mlp.c_fc.weight.w2 shape=(6, 4) sum= 2.687002549e-01 first=-1.164948269e-02
/// AdamW with bias correction and decoupled decay, after one and two steps, matches numpy; the
/// step counter is part of the state.
#[test]
fn adamw_two_steps_match_numpy() -> Result<()> {
    let f = golden();
    let names = ["transformer.wte.weight", "transformer.h.0.mlp.c_fc.weight"];
    let params = vars(&f, "adamw", &names, "w0");
    let cfg = AdamWConfig {
        lr: 0.01,
        betas: (0.9, 0.95),
        eps: 1e-8,
        weight_decay: 0.1,
        decay_embedding: true,
        scope: Default::default(),
    };
    let mut opt = AdamW::new("adamw", cfg, params.clone())?;
    for t in 1..=2 {
        opt.step(&grads(&f, "adamw", &names, &format!("g{t}")), 0.01)?;
        for n in names {
            let r = rel(params[n].as_tensor(), &g(&f, &format!("adamw.{n}.w{t}")));
            assert!(r < 1e-5, "step {t} {n}: rel {r}");
        }
    }
    let st: HashMap<_, _> = opt.state()?.into_iter().collect();
    assert_eq!(st["step"].to_vec1::<f64>()?, vec![2.0]);
    Ok(())
}

/// Refreshes on every step, so one step folds in the recorded inputs.
fn nm_cfg() -> NewtonMuonConfig {
    NewtonMuonConfig {
        lr: 0.1,
        refresh: 1,
        ..NewtonMuonConfig::default()
    }
}

/// NM-1's phase: with R = 32 the statistics are gathered and refreshed on steps 31, 63, …
/// (`t = step + 1`, `t % 32 == 0`), and steps 0-30 are plain Muon.
#[test]
fn newton_muon_refreshes_on_nm1_phase() -> Result<()> {
    let f = golden();
    let params = vars(&f, "nm", &["transformer.h.0.attn.c_attn.weight"], "w0");
    let opt = NewtonMuon::new("nm", NewtonMuonConfig::default(), params, DType::F32, 8)?;
    let refreshing: Vec<usize> = (0..130).filter(|&s| opt.wants_layer_inputs(s)).collect();
    assert_eq!(refreshing, vec![31, 63, 95, 127]);
    Ok(())
}

// golden_optim.py (α 0.05, ridge 0.2, init 0.001, two micro-batches of 16 rows, block 8):
// nm.transformer.h.0.attn.c_attn.weight.inv0 shape=(8, 8) sum= 1.091729551e+02 first= 1.841947472e+01
// nm.transformer.h.0.attn.c_attn.weight.w1   shape=(24, 8) sum=-8.251992594e-01 first= 1.663637695e-01
// nm.transformer.h.0.mlp.c_proj.weight.inv0  shape=(8, 8) sum= 8.134428525e+01 first= 1.778246929e+01
// nm.transformer.h.0.mlp.c_proj.weight.inv3  shape=(8, 8) sum= 8.640153123e+00 first= 1.597896781e+00
// nm.transformer.h.0.mlp.c_proj.weight.w1    shape=(8, 32) sum=-2.403942006e+00 first= 2.363699330e-01
/// Newton-Muon's statistics (micro-batch average, EMA from 0.001·I, ridge, Cholesky inverse),
/// the 4-block diagonal statistic of mlp.c_proj, and the preconditioned Muon step match numpy.
#[test]
fn newton_muon_statistics_and_step_match_numpy() -> Result<()> {
    let f = golden();
    let names = [
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.mlp.c_proj.weight",
    ];
    let params = vars(&f, "nm", &names, "w0");
    let mut opt = NewtonMuon::new("newton_muon", nm_cfg(), params.clone(), DType::F32, 8)?;
    for n in names {
        opt.record_layer_input(n, &g(&f, &format!("nm.{n}.x0")))?;
        opt.record_layer_input(n, &g(&f, &format!("nm.{n}.x1")))?;
    }
    opt.record_layer_input(
        "transformer.h.0.mlp.c_fc.weight",
        &g(&f, "nm.transformer.h.0.attn.c_attn.weight.x0"),
    )?;
    opt.step(&grads(&f, "nm", &names, "g"), 0.1)?;
    for (n, blocks) in [(names[0], 1), (names[1], 4)] {
        for j in 0..blocks {
            let r = rel(
                opt.inverse(n, j).unwrap(),
                &g(&f, &format!("nm.{n}.inv{j}")),
            );
            assert!(r < 1e-5, "{n} inverse block {j}: rel {r}");
        }
        let r = rel(params[n].as_tensor(), &g(&f, &format!("nm.{n}.w1")));
        assert!(r < 1e-5, "{n} after one step: rel {r}");
    }
    assert!(opt.inverse(names[1], 4).is_none());
    Ok(())
}

/// With the statistic S = I (α = 0 so it stays), K = 1.2·I and Newton-Muon takes the Muon step:
/// NS normalises away the 1/1.2 (only the 1e-7 in the norm differs).
#[test]
fn newton_muon_with_identity_statistic_is_muon() -> Result<()> {
    let f = golden();
    let p1 = vars(&f, "muon.record4", &BLOCK, "w0");
    let p2 = vars(&f, "muon.record4", &BLOCK, "w0");
    let cfg = NewtonMuonConfig {
        ema: 0.0,
        init: 1.0,
        ..nm_cfg()
    };
    let mut nm = NewtonMuon::new("nm", cfg, p1.clone(), DType::F32, 8)?;
    let mut mu = Muon::new(
        "muon",
        MuonConfig {
            lr: 0.1,
            ..MuonConfig::default()
        },
        p2.clone(),
        DType::F32,
    )?;
    for n in BLOCK {
        let cols = p1[n].dims()[1];
        nm.record_layer_input(n, &Tensor::ones((4, cols), DType::F32, &Device::Cpu)?)?;
    }
    for gk in ["g1", "g2"] {
        nm.step(&grads(&f, "muon.record4", &BLOCK, gk), 0.1)?;
        mu.step(&grads(&f, "muon.record4", &BLOCK, gk), 0.1)?;
    }
    let inv = nm.inverse(BLOCK[0], 0).unwrap();
    assert!(rel(inv, &(Tensor::eye(8, DType::F32, &Device::Cpu)? / 1.2)?) < 1e-6);
    for n in BLOCK {
        let r = rel(p1[n].as_tensor(), p2[n].as_tensor());
        assert!(r < 1e-5, "{n}: Newton-Muon(S = I) vs Muon rel {r}");
    }
    Ok(())
}

// golden_optim.py:
// ls.msgn shape=(8, 12) sum=-2.889767585e-01 first=-1.883952688e-01
// ls.ns5  shape=(8, 12) sum=-4.484017374e-01 first=-1.346454476e-01
// # least squares: cos(NS5(G·K⁻¹), msgn(G·(ZZᵀ)⁻¹)) = 0.989465
/// Linear least squares W·z ≈ y with exact statistics (α = 1, ridge 0, no momentum): the update
/// direction is NS5(G·(ZZᵀ/N)⁻¹) (numpy, 1e-5) and points along msgn(G·(ZZᵀ)⁻¹) from the SVD.
#[test]
fn newton_muon_exact_statistics_match_svd_direction() -> Result<()> {
    let f = golden();
    let name = "transformer.h.0.attn.c_proj.weight";
    let w0 = g(&f, "ls.w0");
    let (z, y) = (g(&f, "ls.x"), g(&f, "ls.y"));
    let params: BTreeMap<String, Var> = [(name.to_string(), Var::from_tensor(&w0)?)].into();
    let cfg = NewtonMuonConfig {
        lr: 1.0,
        ema: 1.0,
        ridge: 0.0,
        momentum: 0.0,
        nesterov: false,
        ..nm_cfg()
    };
    let mut opt = NewtonMuon::new("nm", cfg, params.clone(), DType::F32, 768)?;
    opt.record_layer_input(name, &z)?;
    // G = (W·zᵀ − yᵀ)·z / N, the gradient of 0.5·mean‖W·z − y‖² (from the script, in f64).
    let gr = g(&f, "ls.g");
    let recomputed = (z.matmul(&w0.t()?)? - &y)?
        .t()?
        .matmul(&z)?
        .affine(1.0 / 40.0, 0.0)?;
    assert!(rel(&recomputed, &gr) < 1e-5);
    opt.step(&[(name.to_string(), gr)].into(), 1.0)?;
    let dir = ((&w0 - params[name].as_tensor())? / 12f64.sqrt())?; // undo lr·√max(8, 12)
    let r = rel(&dir, &g(&f, "ls.ns5"));
    assert!(r < 1e-5, "vs numpy NS5(G·K⁻¹): rel {r}");
    let exact = g(&f, "ls.msgn");
    let cos = (&dir * &exact)?.sum_all()?.to_scalar::<f32>()? as f64
        / (dir.sqr()?.sum_all()?.to_scalar::<f32>()? as f64).sqrt()
        / (exact.sqr()?.sum_all()?.to_scalar::<f32>()? as f64).sqrt();
    assert!(cos > 0.98, "cos to msgn(G·(ZZᵀ)⁻¹) = {cos}");
    Ok(())
}

/// A statistic that is not positive definite (S = −I loaded from state) makes the Cholesky
/// fail: the previous inverse is kept and the failure is counted.
#[test]
fn newton_muon_cholesky_failure_keeps_previous_inverse() -> Result<()> {
    let dev = Device::Cpu;
    let name = "transformer.h.0.attn.c_proj.weight";
    let params: BTreeMap<String, Var> =
        [(name.to_string(), Var::ones((4, 4), DType::F32, &dev)?)].into();
    let mut opt = NewtonMuon::new("nm", nm_cfg(), params, DType::F32, 4)?;
    let mut st: HashMap<String, Tensor> = opt.state()?.into_iter().collect();
    let prev = (Tensor::eye(4, DType::F32, &dev)? * 3.0)?;
    st.insert(
        format!("stat.{name}.0"),
        (Tensor::eye(4, DType::F32, &dev)? * -1.0)?,
    );
    st.insert(format!("inv.{name}.0"), prev.clone());
    opt.load_state(&st)?;
    opt.record_layer_input(name, &Tensor::ones((3, 4), DType::F32, &dev)?)?;
    opt.step(
        &[(name.to_string(), Tensor::ones((4, 4), DType::F32, &dev)?)].into(),
        0.1,
    )?;
    assert_eq!(opt.cholesky_failures, 1);
    assert_eq!(
        opt.inverse(name, 0).unwrap().to_vec2::<f32>()?,
        prev.to_vec2::<f32>()?
    );
    Ok(())
}

/// The symmetric eigen helper is used for the NS singular-value check above; keep it honest.
#[test]
fn eigen_helper_orders_descending() {
    let (vals, _) = symmetric_eigen(&[2.0, 0.0, 0.0, 5.0], 2);
    assert_eq!(vals, vec![5.0, 2.0]);
}
