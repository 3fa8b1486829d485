//! safetensors checkpoints with PyTorch state_dict names.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};

use super::params::{LM_HEAD_ALIAS, WTE};
use super::GptConfig;

/// Write `vars` as fp32 tensors under their names.
pub fn save(vars: &BTreeMap<String, Var>, path: &Path) -> Result<()> {
    let map: HashMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_detached_tensor().to_dtype(DType::F32)?)))
        .collect::<Result<_>>()?;
    candle_core::safetensors::save(&map, path)
        .map_err(|e| anyhow!("{}: cannot write safetensors: {e}", path.display()))
}

/// Read the parameters of `cfg` from `path` onto `device` as fp32 `Var`s.
///
/// `lm_head.weight` stands for `transformer.wte.weight` (tied); when a file holds both, they must be
/// equal. Floating tensors of another dtype (bf16/f16/f64) are converted to fp32. Missing, extra or
/// wrong-shape tensors are errors naming the file and the tensor.
pub fn load(cfg: &GptConfig, path: &Path, device: &Device) -> Result<BTreeMap<String, Var>> {
    let file = path.display();
    let mut tensors = candle_core::safetensors::load(path, device)
        .map_err(|e| anyhow!("{file}: cannot read safetensors: {e}"))?;

    if let Some(alias) = tensors.remove(LM_HEAD_ALIAS) {
        match tensors.get(WTE) {
            None => {
                tensors.insert(WTE.to_string(), alias);
            }
            Some(wte) => {
                let same = wte.shape() == alias.shape()
                    && wte
                        .to_dtype(DType::F32)?
                        .ne(&alias.to_dtype(DType::F32)?)?
                        .to_dtype(DType::F32)?
                        .sum_all()?
                        .to_scalar::<f32>()?
                        == 0.0;
                if !same {
                    bail!("{file}: tensors {WTE} and {LM_HEAD_ALIAS} are both present and differ (they are tied)");
                }
            }
        }
    }

    let shapes = cfg.param_shapes();
    let mut extra: Vec<&String> = tensors
        .keys()
        .filter(|k| !shapes.contains_key(*k))
        .collect();
    extra.sort();
    if let Some(name) = extra.first() {
        bail!(
            "{file}: unexpected tensor {name} ({} unexpected in all) for a model of {} layers, width {}",
            extra.len(),
            cfg.n_layer,
            cfg.n_embd
        );
    }

    let mut vars = BTreeMap::new();
    for (name, (out_f, in_f)) in shapes {
        let t = tensors.remove(&name).ok_or_else(|| {
            anyhow!("{file}: missing tensor {name} (expected shape ({out_f}, {in_f}))")
        })?;
        if t.dims() != [out_f, in_f] {
            bail!(
                "{file}: tensor {name} has shape {:?}, expected ({out_f}, {in_f})",
                t.dims()
            );
        }
        if !t.dtype().is_float() {
            bail!(
                "{file}: tensor {name} has dtype {:?}, expected a float type",
                t.dtype()
            );
        }
        let t = t
            .to_dtype(DType::F32)
            .with_context(|| format!("{file}: tensor {name}: cannot convert to f32"))?;
        vars.insert(name, Var::from_tensor(&t)?);
    }
    Ok(vars)
}
