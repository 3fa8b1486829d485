//! Helpers for checkpointed optimizer state: look up a named tensor and check it fits.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, Var};

/// The state tensor `key`, checked to have `like`'s shape, moved to its device as f32.
pub fn take(state: &HashMap<String, Tensor>, key: &str, like: &Var) -> Result<Tensor> {
    take_shaped(state, key, like.dims(), like.device())
}

/// The state tensor `key`, checked to have shape `dims`, on `device` as f32.
pub fn take_shaped(
    state: &HashMap<String, Tensor>,
    key: &str,
    dims: &[usize],
    device: &candle_core::Device,
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
