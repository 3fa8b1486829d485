//! Checkpointed optimizer state, declared once per optimizer (after burn's optimizer records):
//! [`super::Optimizer::visit_state`] hands every named [`Slot`] to a visitor, and [`save`] and
//! [`load`] are both built on that one declaration, so a name cannot be saved under one key and
//! looked up under another.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};

/// One piece of checkpointed state.
pub enum Slot<'a> {
    /// A tensor. A loaded value must have the slot's current shape; it is moved to the slot's
    /// device as f32.
    Tensor(&'a mut Tensor),
    /// A step counter, saved as a one-element f64 tensor.
    Counter(&'a mut u64),
}

/// Receives each declared `(name, slot)`; names are unique within a group.
pub type Visitor<'v> = dyn FnMut(String, Slot<'_>) -> Result<()> + 'v;

/// Every slot that `visit_state` declares, as named tensors in declaration order. Counters go
/// on the device of the first tensor slot (the CPU if there is none).
pub fn save(
    visit_state: impl FnOnce(&mut Visitor<'_>) -> Result<()>,
) -> Result<Vec<(String, Tensor)>> {
    enum Saved {
        Tensor(Tensor),
        Counter(u64),
    }
    let mut entries = Vec::new();
    visit_state(&mut |name, slot| {
        entries.push(match slot {
            Slot::Tensor(t) => (name, Saved::Tensor(t.clone())),
            Slot::Counter(c) => (name, Saved::Counter(*c)),
        });
        Ok(())
    })?;
    let dev = entries
        .iter()
        .find_map(|(_, e)| match e {
            Saved::Tensor(t) => Some(t.device().clone()),
            Saved::Counter(_) => None,
        })
        .unwrap_or(Device::Cpu);
    entries
        .into_iter()
        .map(|(name, e)| match e {
            Saved::Tensor(t) => Ok((name, t)),
            Saved::Counter(c) => Ok((name, Tensor::new(&[c as f64], &dev)?)),
        })
        .collect()
}

/// Fill every slot that `visit_state` declares from `state` (as written by [`save`]), checking
/// each tensor's shape against the slot's.
pub fn load(
    state: &HashMap<String, Tensor>,
    visit_state: impl FnOnce(&mut Visitor<'_>) -> Result<()>,
) -> Result<()> {
    visit_state(&mut |name, slot| {
        match slot {
            Slot::Tensor(t) => {
                // A copy: optimizers update their state in place (`cpu::inplace`), and the
                // loaded tensors may share storage with the caller's map.
                *t = take_shaped(state, &name, t.dims(), t.device())?.copy()?;
            }
            Slot::Counter(c) => *c = take_scalar(state, &name)? as u64,
        }
        Ok(())
    })
}

/// The state tensor `key`, checked to have shape `dims`, on `device` as f32.
pub fn take_shaped(
    state: &HashMap<String, Tensor>,
    key: &str,
    dims: &[usize],
    device: &Device,
) -> Result<Tensor> {
    let t = state
        .get(key)
        .with_context(|| format!("optimizer state is missing `{key}`"))?;
    if t.dims() != dims {
        bail!(
            "optimizer state `{key}` has shape {:?}, expected {:?}",
            t.dims(),
            dims
        );
    }
    Ok(t.to_dtype(DType::F32)?.to_device(device)?)
}

/// A scalar state entry (a step counter) as f64.
pub fn take_scalar(state: &HashMap<String, Tensor>, key: &str) -> Result<f64> {
    let t = state
        .get(key)
        .with_context(|| format!("optimizer state is missing `{key}`"))?;
    let v = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => bail!(
            "optimizer state `{key}` should be a scalar, has shape {:?}",
            t.dims()
        ),
    }
}
