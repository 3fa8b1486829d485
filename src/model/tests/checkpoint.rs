//! safetensors save/load and its errors.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};

use super::*;
use crate::model::{Gpt, LM_HEAD_ALIAS, WTE};

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
        assert_eq!(
            bits(v.as_tensor()),
            bits(back.vars()[name].as_tensor()),
            "{name}"
        );
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
    let err = format!(
        "{:#}",
        Gpt::from_safetensors(&cfg, &alias, &Device::Cpu)
            .err()
            .unwrap()
    );
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
    let msg = format!(
        "{:#}",
        Gpt::from_safetensors(&cfg, &junk, &Device::Cpu)
            .err()
            .unwrap()
    );
    assert!(msg.contains("junk.safetensors"), "{msg}");
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
