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

    let tied_record4 = cfg.tied_head && cfg.names == super::arch::Names::Record4;
    let alias = if tied_record4 {
        tensors.remove(LM_HEAD_ALIAS)
    } else {
        None
    };
    if let Some(alias) = alias {
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
            "{file}: unexpected tensor {name} ({} unexpected in all) for a {} model of {} layers, width {}{}",
            extra.len(),
            arch_name(cfg),
            cfg.n_layer,
            cfg.n_embd,
            other_arch_hint(cfg, name)
        );
    }

    let mut vars = BTreeMap::new();
    for (name, shape) in shapes {
        let t = tensors.remove(&name).ok_or_else(|| {
            anyhow!(
                "{file}: missing tensor {name} (expected shape {shape:?}) for a {} model",
                arch_name(cfg)
            )
        })?;
        if t.dims() != shape.as_slice() {
            bail!(
                "{file}: tensor {name} has shape {:?}, expected {shape:?}",
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

/// "record-4" or "track-3" (the naming scheme), for messages.
fn arch_name(cfg: &GptConfig) -> &'static str {
    match cfg.names {
        super::arch::Names::Record4 => "record-4",
        super::arch::Names::Track3 => "track-3",
    }
}

/// A hint when `name` belongs to the other naming scheme: the file is a checkpoint of another
/// architecture (e.g. `--init-from` a record-4 file into a Track-3 run).
fn other_arch_hint(cfg: &GptConfig, name: &str) -> &'static str {
    let track3_name = name.starts_with("blocks.") || name == "embed.weight";
    let record4_name = name.starts_with("transformer.");
    match cfg.names {
        super::arch::Names::Record4 if track3_name => " (the file holds a Track-3 model)",
        super::arch::Names::Track3 if record4_name => " (the file holds a record-4 model)",
        _ => "",
    }
}
