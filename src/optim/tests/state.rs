//! The optimizers as a set: state round trips for every method, the registry's routing, and the
//! `[optim]` table's defaults.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};

use super::BLOCK;
use crate::optim::*;

/// Tiny model-like parameter set for registry and round-trip tests.
pub(super) fn toy_params(dev: &Device) -> BTreeMap<String, Var> {
    let mk = |r: usize, c: usize, k: f64| {
        let v: Vec<f32> = (0..r * c)
            .map(|i| ((i as f64 * 0.37 + k).sin() * 0.1) as f32)
            .collect();
        Var::from_tensor(&Tensor::from_vec(v, (r, c), dev).unwrap()).unwrap()
    };
    let mut p = BTreeMap::new();
    p.insert(EMBEDDING.to_string(), mk(40, 8, 0.1));
    for (i, n) in BLOCK.iter().enumerate() {
        let (r, c) = match i {
            0 => (24, 8),
            1 => (8, 8),
            2 => (32, 8),
            _ => (8, 32),
        };
        p.insert(n.to_string(), mk(r, c, i as f64));
    }
    p
}

pub(super) fn toy_grads(p: &BTreeMap<String, Var>, step: usize) -> Grads {
    p.iter()
        .map(|(n, v)| {
            let (r, c) = v.dims2().unwrap();
            let d: Vec<f32> = (0..r * c)
                .map(|i| ((i * 7 + step * 13 + n.len()) as f64 * 1.618).sin() as f32)
                .collect();
            (n.clone(), Tensor::from_vec(d, (r, c), v.device()).unwrap())
        })
        .collect()
}

fn feed_inputs(set: &mut OptimizerSet, p: &BTreeMap<String, Var>, step: usize) -> Result<()> {
    let mut router = LayerInputRouter { set, step };
    for n in BLOCK {
        let c = p[n].dims()[1];
        let x: Vec<f32> = (0..6 * c)
            .map(|i| ((i + step) as f64 * 0.913).cos() as f32)
            .collect();
        router.record(n, &Tensor::from_vec(x, (6, c), &Device::Cpu)?)?;
    }
    Ok(())
}

fn snapshot(p: &BTreeMap<String, Var>) -> BTreeMap<String, Vec<f32>> {
    p.iter()
        .map(|(n, v)| {
            (
                n.clone(),
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect()
}

/// For every optimizer: state() after two steps, loaded into a fresh set over a copy of the
/// weights, gives a bit-identical third step (Newton-Muon with refresh 2, so the third step
/// refreshes from saved S and inverses).
#[test]
fn state_round_trip_is_bit_exact_for_every_optimizer() -> Result<()> {
    let dev = Device::Cpu;
    for name in crate::optim::Method::ALL {
        let mut cfg = OptimConfig {
            name,
            ..OptimConfig::default()
        };
        cfg.newton_muon.refresh = 2;
        let p = toy_params(&dev);
        let mut set = build(&cfg, &p, DType::F32)?;
        for step in 0..2 {
            feed_inputs(&mut set, &p, step)?;
            set.step(&toy_grads(&p, step), 0.5)?;
        }
        let saved: HashMap<String, Tensor> = set.state()?.into_iter().collect();
        // A second run resumed from the saved weights and state.
        let q: BTreeMap<String, Var> = p
            .iter()
            .map(|(n, v)| {
                (
                    n.clone(),
                    Var::from_tensor(&v.as_tensor().copy().unwrap()).unwrap(),
                )
            })
            .collect();
        let mut resumed = build(&cfg, &q, DType::F32)?;
        resumed.load_state(&saved)?;
        for (s, params) in [(&mut set, &p), (&mut resumed, &q)] {
            feed_inputs(s, params, 2)?;
            s.step(&toy_grads(params, 2), 0.5)?;
        }
        assert_eq!(snapshot(&p), snapshot(&q), "{name}: resumed step differs");
        let before: Vec<f32> = toy_params(&dev)[BLOCK[0]]
            .as_tensor()
            .flatten_all()?
            .to_vec1()?;
        assert_ne!(
            snapshot(&p)[BLOCK[0]],
            before,
            "{name}: the steps changed nothing"
        );
    }
    Ok(())
}

/// Registry: groups and labels per name; unknown names list the valid ones; missing state errors.
#[test]
fn registry_routes_and_rejects_unknown_names() -> Result<()> {
    let p = toy_params(&Device::Cpu);
    let set = build(
        &OptimConfig {
            name: crate::optim::Method::AdamW,
            ..OptimConfig::default()
        },
        &p,
        DType::F32,
    )?;
    assert_eq!(set.groups.len(), 1);
    assert_eq!(set.groups[0].param_names().len(), 5);
    let set = build(
        &OptimConfig {
            name: crate::optim::Method::NewtonMuon,
            ..OptimConfig::default()
        },
        &p,
        DType::F32,
    )?;
    let lrs = set.lrs(1.0);
    assert_eq!(
        lrs,
        vec![
            ("head".to_string(), 0.004),
            ("newton_muon".to_string(), 0.0004)
        ]
    );
    assert_eq!(set.groups[0].param_names(), vec![EMBEDDING.to_string()]);
    assert_eq!(set.groups[1].param_names().len(), 4);
    let err = "sgd".parse::<crate::optim::Method>().err().unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("`sgd`") && msg.contains("newton-muon, neon, neon-fstar"),
        "{msg}"
    );
    let mut set = build(&OptimConfig::default(), &p, DType::F32)?;
    let err = set.load_state(&HashMap::new()).err().unwrap();
    assert!(format!("{err:#}").contains("missing `step`"), "{err:#}");
    Ok(())
}

/// `[optim]` parsing: omitted tables take defaults, partial tables keep their own defaults, a
/// typo is an error.
#[test]
fn config_defaults_and_unknown_fields() {
    let c: OptimConfig =
        toml::from_str("name = \"adamw\"\n[adamw]\nlr = 0.002\n[muon]\nscale = \"moonlight\"\n")
            .unwrap();
    assert_eq!(c.adamw.lr, 0.002);
    assert_eq!(c.adamw.weight_decay, 0.1);
    assert_eq!(c.head, AdamWConfig::head());
    assert_eq!(c.muon.scale, Scale::Moonlight);
    assert_eq!(c.muon.lr, 0.00036);
    assert_eq!(c.newton_muon.refresh, 32);
    assert!(toml::from_str::<OptimConfig>("name = \"muon\"\n[muon]\nlrr = 1.0\n").is_err());
    assert!(toml::from_str::<OptimConfig>("name = \"muon\"\n[head]\nwd = 1.0\n").is_err());
    assert!(toml::from_str::<OptimConfig>("name = \"muon\"\n[neon]\nform = \"svd\"\n").is_err());
    assert_eq!(Scale::Moonlight.factor(3072, 768), 0.2 * 3072f64.sqrt());
    assert_eq!(Scale::Original.factor(768, 3072), 1.0);
}
