//! The `diag` records (docs/diagnostics.md): which steps get one, the matrices and fields each
//! optimizer writes and how they hang together, a model without hidden matrices, and bad values
//! of `train.diagnostics_every`. The singular values themselves are checked against numpy in
//! `src/optim/tests/spectral.rs`; bit-exact resume of the records in `super::straight_vs_resumed`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};

use super::{opts, tiny};
use crate::optim::newton_schulz::{newton_schulz, NsForm, NsSpec};
use crate::optim::spectral::{singular_values, SvMethod};
use crate::optim::{self, Grads, Method, OptimConfig, Scale, EMBEDDING};
use crate::train::config;
use crate::train::diagnostics::{Pass, SV_METHOD};
use crate::train::log::Diag;
use crate::train::trainer::{train, Resume};

/// Every line of a run's log as JSON.
fn lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The diag records of a run's log, parsed as the type the trainer writes.
fn diags(dir: &Path) -> Vec<Diag> {
    lines(dir)
        .into_iter()
        .filter(|v| v["kind"] == "diag")
        .map(|v| serde_json::from_value(v).unwrap())
        .collect()
}

/// The fields every optimizer writes, then each one's own.
const COMMON: [&str; 7] = [
    "grad_fro",
    "grad_nuc",
    "grad_spec",
    "stable_rank",
    "nuc_fro_ratio",
    "update_rms",
    "update_spec",
];

fn own_fields(optim: &str) -> &'static [&'static str] {
    match optim {
        "muon" => &["ns_sigma_min", "ns_sigma_max"],
        "newton-muon" => &[
            "ns_sigma_min",
            "ns_sigma_max",
            "k_cond",
            "ridge_share",
            "ridge_dominated",
        ],
        "neon-fstar" => &["tau", "kept_rank"],
        _ => &[],
    }
}

/// The 12 reported matrices of the 2-layer test model, c_attn as its q, k and v thirds.
fn expected_names() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for i in 0..2 {
        for s in ["q", "k", "v"] {
            out.insert(format!("transformer.h.{i}.attn.c_attn.weight.{s}"));
        }
        for m in ["attn.c_proj", "mlp.c_fc", "mlp.c_proj"] {
            out.insert(format!("transformer.h.{i}.{m}.weight"));
        }
    }
    out
}

/// (rows, cols) of a reported matrix of the width-32 test model.
fn shape(name: &str) -> (usize, usize) {
    if name.contains("mlp.c_fc") {
        (128, 32)
    } else if name.contains("mlp.c_proj") {
        (32, 128)
    } else {
        (32, 32)
    }
}

/// Checks one run of the test model: `steps` are the diag records' steps; each names the 12
/// matrices with exactly the common fields and `optim`'s own, and the values obey the norm
/// inequalities and the identities that tie the fields together (docs/diagnostics.md).
pub(super) fn check_run(dir: &Path, optim: &str, steps: &[usize]) {
    let all = lines(dir);
    let lrs: BTreeMap<u64, serde_json::Value> = all
        .iter()
        .filter(|v| v["kind"] == "train")
        .map(|v| (v["step"].as_u64().unwrap(), v["lrs"].clone()))
        .collect();
    let want: BTreeSet<&str> = COMMON.iter().chain(own_fields(optim)).copied().collect();
    let mut seen = Vec::new();
    for raw in all.iter().filter(|v| v["kind"] == "diag") {
        let d: Diag = serde_json::from_value(raw.clone()).unwrap();
        seen.push(d.step);
        let names: BTreeSet<String> = d.layers.keys().cloned().collect();
        assert_eq!(names, expected_names(), "{optim} step {}", d.step);
        for (name, fields) in raw["layers"].as_object().unwrap() {
            let keys: BTreeSet<&str> = fields
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            assert_eq!(keys, want, "{optim} step {} {name}", d.step);
        }
        for (name, l) in &d.layers {
            let at = format!("{optim} step {} {name}: {l:?}", d.step);
            let (r, c) = shape(name);
            let k = r.min(c) as f64;
            assert!(
                l.grad_spec > 0.0 && l.grad_spec <= l.grad_fro * (1.0 + 1e-12),
                "{at}"
            );
            assert!(l.grad_fro <= l.grad_nuc * (1.0 + 1e-12), "{at}");
            let sr = (l.grad_fro / l.grad_spec).powi(2);
            let nfr = (l.grad_nuc / l.grad_fro).powi(2);
            assert!((l.stable_rank - sr).abs() <= 1e-12 * sr, "{at}");
            assert!((l.nuc_fro_ratio - nfr).abs() <= 1e-12 * nfr, "{at}");
            assert!(
                l.stable_rank >= 1.0 - 1e-12 && l.stable_rank <= k + 1e-9,
                "{at}"
            );
            assert!(
                l.nuc_fro_ratio >= 1.0 - 1e-12 && l.nuc_fro_ratio <= k + 1e-9,
                "{at}"
            );
            // ‖G‖²_F ≤ ‖G‖₂·‖G‖_*.
            assert!(l.stable_rank <= l.nuc_fro_ratio * (1.0 + 1e-12), "{at}");
            let (rms, spec) = (l.update_rms.unwrap(), l.update_spec.unwrap());
            // ‖ΔW‖_F ≤ √k·σ₁, i.e. σ₁ ≥ rms·√(r·c/k).
            assert!(
                rms > 0.0 && spec >= rms * ((r * c) as f64 / k).sqrt() * (1.0 - 1e-9),
                "{at}"
            );
            if let (Some(lo), Some(hi)) = (l.ns_sigma_min, l.ns_sigma_max) {
                // NS5 takes the top singular value to about [0.7, 1.2]; directions far below
                // ‖U‖_F are lifted less (docs/diagnostics.md), so only 0 < min ≤ max.
                assert!(0.0 < lo && lo <= hi && 0.7 < hi && hi < 1.25, "{at}");
                // The update is lr·√max(r, c)·O (record-4 scale, q/k/v apart), with lr the one
                // the train record logs: the scale the optimizer kept is the record's.
                let group = if optim == "muon" {
                    "muon"
                } else {
                    "newton_muon"
                };
                let lr = lrs[&(d.step as u64)][group].as_f64().unwrap();
                let from_ns = lr * (r.max(c) as f64).sqrt() * hi;
                assert!((spec - from_ns).abs() <= 1e-5 * spec, "{at}: {from_ns}");
            }
            if let Some(kc) = l.k_cond {
                assert!(kc >= 1.0 && kc.is_finite(), "{at}");
                // d = 0.2·tr(S)/n makes the ridge 0.2/1.2 of tr K (docs/diagnostics.md).
                assert!((l.ridge_share.unwrap() - 1.0 / 6.0).abs() < 1e-4, "{at}");
                assert!((0.0..=1.0).contains(&l.ridge_dominated.unwrap()), "{at}");
            }
            if let Some(kept) = l.kept_rank {
                assert!(
                    kept >= 1.0 && kept.fract() == 0.0 && l.tau.unwrap() > 0.0,
                    "{at}"
                );
            }
        }
        if optim == "neon-fstar" {
            // τ and the kept rank belong to the whole packed matrix: the same on its thirds.
            let q = &d.layers["transformer.h.0.attn.c_attn.weight.q"];
            let v = &d.layers["transformer.h.0.attn.c_attn.weight.v"];
            assert_eq!((q.tau, q.kept_rank), (v.tau, v.kept_rank));
        }
    }
    assert_eq!(seen, steps, "{optim}: diag steps");
}

/// `diagnostics_every` = N writes a record for steps N, 2N, …, with the train record's
/// `diag_ms` on the same steps only; 0 writes none.
#[test]
fn diagnostics_every_picks_the_steps() {
    let tmp = tempfile::tempdir().unwrap();
    for (every, steps) in [(4, vec![4]), (0, vec![])] {
        let dir = tmp.path().join(format!("every{every}"));
        let set = format!("train.diagnostics_every={every}");
        let cfg = tiny("muon", &[set.as_str()]);
        train(&cfg, &opts(&dir, Resume::No, None)).unwrap();
        check_run(&dir, "muon", &steps);
        let timed: Vec<u64> = lines(&dir)
            .iter()
            .filter(|v| v["kind"] == "train" && v.get("diag_ms").is_some())
            .map(|v| v["step"].as_u64().unwrap())
            .collect();
        assert_eq!(timed, steps.iter().map(|&s| s as u64).collect::<Vec<_>>());
        assert_eq!(diags(&dir).len(), steps.len());
    }
}

/// An fp32 test matrix of full rank (incommensurate frequencies), shifted by `seed`.
fn tensor(rows: usize, cols: usize, seed: f64) -> Tensor {
    let data: Vec<f32> = (0..rows * cols)
        .map(|k| {
            let (i, j) = ((k / cols) as f64, (k % cols) as f64);
            ((i + 1.0) * 0.7548776662 * (j + 1.0) + 0.5698402910 * j * j + seed).cos() as f32
        })
        .collect();
    Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
}

/// The embedding, a packed c_attn (d = 4) and an mlp.c_fc, as weights and gradients.
fn toy() -> (BTreeMap<String, Var>, Grads) {
    let shapes = [
        (EMBEDDING, (50, 4)),
        ("transformer.h.0.attn.c_attn.weight", (12, 4)),
        ("transformer.h.0.mlp.c_fc.weight", (16, 4)),
    ];
    let mut params = BTreeMap::new();
    let mut grads = Grads::new();
    for (i, (name, (r, c))) in shapes.iter().enumerate() {
        let w = Var::from_tensor(&tensor(*r, *c, 0.0)).unwrap();
        params.insert(name.to_string(), w);
        grads.insert(name.to_string(), tensor(*r, *c, 1.0 + i as f64));
    }
    (params, grads)
}

/// One Muon step of `toy()` under `scale` with a diagnostics pass around it; also the
/// Newton–Schulz input of that first step, U = (1 + μ)·G (Nesterov, empty momentum).
fn muon_pass(scale: Scale) -> (Diag, Grads) {
    let (params, grads) = toy();
    let mut cfg = OptimConfig {
        name: Method::Muon,
        ..OptimConfig::default()
    };
    cfg.muon.scale = scale;
    let mut opt = optim::build(&cfg, &params, DType::F32).unwrap();
    let dev = Device::Cpu;
    let pass = Pass::before(1, &grads, &mut opt, &dev, SV_METHOD);
    let pass = pass.unwrap().unwrap();
    opt.step(&grads, 1.0).unwrap();
    let inputs = grads
        .iter()
        .map(|(n, g)| (n.clone(), (g * (1.0 + cfg.muon.momentum)).unwrap()))
        .collect();
    (pass.after(&mut opt, &dev).unwrap().record, inputs)
}

/// (min, max) singular value of NS5(`u`), computed here directly.
fn ns_extremes(u: &Tensor) -> (f64, f64) {
    let o = newton_schulz(u, NsSpec::record4(5, NsForm::Record4), DType::F32).unwrap();
    let s = singular_values(&[&o], SvMethod::Gram).unwrap().remove(0);
    (s[s.len() - 1], s[0])
}

/// Under record 4's scale q, k and v are orthogonalised apart and each third has its own
/// Newton–Schulz spectrum (read off the update's); under another scale the whole packed matrix
/// is, and the thirds share its spectrum. Both against NS5 run here on the step's input.
#[test]
fn ns_spectrum_follows_how_qkv_was_orthogonalised() {
    let qkv = "transformer.h.0.attn.c_attn.weight";
    let close = |a: (f64, f64), b: (f64, f64)| {
        assert!(
            (a.0 - b.0).abs() <= 1e-5 * b.0 && (a.1 - b.1).abs() <= 1e-5 * b.1,
            "{a:?} vs {b:?}"
        );
    };
    let ns = |d: &Diag, name: &str| {
        let l = &d.layers[name];
        (l.ns_sigma_min.unwrap(), l.ns_sigma_max.unwrap())
    };
    let (apart, u) = muon_pass(Scale::Record4);
    for (k, s) in ["q", "k", "v"].into_iter().enumerate() {
        let third = u[qkv].narrow(0, 4 * k, 4).unwrap();
        close(ns(&apart, &format!("{qkv}.{s}")), ns_extremes(&third));
    }
    let fc = "transformer.h.0.mlp.c_fc.weight";
    close(ns(&apart, fc), ns_extremes(&u[fc]));
    let (whole, u) = muon_pass(Scale::Original);
    for s in ["q", "k", "v"] {
        close(ns(&whole, &format!("{qkv}.{s}")), ns_extremes(&u[qkv]));
    }
}

/// One pass by hand: the gradient fields of a q third are its rows' own norms, and a model with
/// only the embedding (and a vector) has nothing to report and arms nothing.
#[test]
fn pass_reports_each_third_and_nothing_without_matrices() {
    let (params, grads) = toy();
    let cfg = OptimConfig {
        name: Method::Muon,
        ..OptimConfig::default()
    };
    let mut opt = optim::build(&cfg, &params, DType::F32).unwrap();
    let dev = Device::Cpu;
    let pass = Pass::before(7, &grads, &mut opt, &dev, SV_METHOD)
        .unwrap()
        .unwrap();
    opt.step(&grads, 1.0).unwrap();
    let done = pass.after(&mut opt, &dev).unwrap();
    assert_eq!(done.record.step, 7);
    let names: Vec<&str> = done.record.layers.keys().map(|s| s.as_str()).collect();
    let qkv = "transformer.h.0.attn.c_attn.weight";
    let want = [
        format!("{qkv}.k"),
        format!("{qkv}.q"),
        format!("{qkv}.v"),
        "transformer.h.0.mlp.c_fc.weight".to_string(),
    ];
    assert_eq!(names, want);
    let k = grads[qkv].narrow(0, 4, 4).unwrap();
    let fro = k
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    let got = done.record.layers[&format!("{qkv}.k")].grad_fro;
    assert!(
        (got - fro.sqrt()).abs() <= 1e-6 * got,
        "{got} vs {}",
        fro.sqrt()
    );

    let only: Grads = grads
        .iter()
        .filter(|(n, _)| n.as_str() == EMBEDDING)
        .map(|(n, g)| (n.clone(), g.clone()))
        .chain([(
            "bias".to_string(),
            Tensor::ones(4, DType::F32, &dev).unwrap(),
        )])
        .collect();
    assert!(Pass::before(8, &only, &mut opt, &dev, SV_METHOD)
        .unwrap()
        .is_none());
    opt.step(&grads, 1.0).unwrap();
    assert!(opt.take_kept().is_empty(), "nothing armed, nothing kept");
}

/// A negative, fractional or non-numeric `diagnostics_every` is a one-line error naming the
/// field, from `--set` and from a config file alike.
#[test]
fn bad_diagnostics_every_is_a_config_error() {
    for bad in ["-1", "2.5", "\"ten\"", "true"] {
        let e = config::load(
            "shakespeare-tiny",
            &[format!("train.diagnostics_every={bad}")],
        )
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("train.diagnostics_every"), "{bad}: {e}");
        assert!(!e.contains('\n'), "{bad}: {e}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.toml");
    let text = tiny("muon", &["train.diagnostics_every=0"])
        .to_toml()
        .unwrap();
    let text = text.replace("[train]\n", "[train]\ndiagnostics_every = -3\n");
    std::fs::write(&path, text).unwrap();
    let e = format!("{:#}", config::from_toml_file(&path).unwrap_err());
    assert!(
        e.contains("train.diagnostics_every") && e.contains("-3"),
        "{e}"
    );
}
