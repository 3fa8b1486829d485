//! The work of one step: the batch geometry, one micro-batch's forward and backward into the
//! accumulated gradients, and the validation pass.

use std::collections::BTreeSet;

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor};

use super::config::Config;
use crate::cpu::inplace::axpby;
use crate::data::Loader;
use crate::model::arch::Reduction;
use crate::model::{Gpt, LayerInputSink};
use crate::optim::Grads;

/// How a step's tokens are cut: `ranks` windows of `rank_batch` sequences of `seq_len`, each
/// read as loader calls of `device_batch` sequences and cut into micro-batches of `micro_batch`
/// sequences (`accum` micro-batches in all).
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub seq_len: usize,
    pub rank_batch: usize,
    pub device_batch: usize,
    pub micro_batch: usize,
    pub accum: usize,
    pub batch_tokens: usize,
}

impl Geometry {
    /// The geometry of `cfg`, checked to divide evenly.
    pub fn of(cfg: &Config) -> Result<Geometry> {
        let t = cfg.model.seq_len;
        Ok(Geometry {
            seq_len: t,
            rank_batch: cfg.train.rank_batch(t)?,
            device_batch: cfg.train.call_batch(t)?,
            micro_batch: cfg.train.micro_batch,
            accum: cfg.train.accum_steps(t)?,
            batch_tokens: cfg.train.batch_tokens,
        })
    }

    /// Training tokens seen after `step` steps.
    pub fn tokens_at(&self, step: usize) -> u64 {
        step as u64 * self.batch_tokens as u64
    }
}

/// A step's gradients, summed over its micro-batches. The first micro-batch's gradients are kept
/// as they come (they may share storage with buffers of the graph); the first sum makes a tensor
/// of the step's own, and later micro-batches are added into it in place (`cpu::inplace`), so a
/// step allocates one gradient buffer per parameter whatever its number of micro-batches.
#[derive(Default)]
pub struct GradSum {
    grads: Grads,
    owned: BTreeSet<String>,
}

impl GradSum {
    /// Add one micro-batch's gradient of parameter `name`.
    pub fn add(&mut self, name: &str, g: &Tensor) -> Result<()> {
        match self.grads.get_mut(name) {
            None => {
                self.grads.insert(name.to_string(), g.clone());
            }
            Some(acc) if self.owned.contains(name) => axpby(acc, 1.0, g, 1.0)?,
            Some(acc) => {
                *acc = (&*acc + g)?;
                self.owned.insert(name.to_string());
            }
        }
        Ok(())
    }

    /// The sums, by parameter name.
    pub fn into_grads(self) -> Grads {
        self.grads
    }
}

/// Forward and backward of one micro-batch: adds its gradients into `grads` and returns its mean
/// loss per token as a detached f64 scalar tensor, still on the device. A mean-loss model's
/// gradients are scaled by 1/`accum` (the step's gradient is the mean over its micro-batches,
/// record 4); a sum-loss model's are added as they are (the step's gradient is the sum over all
/// its tokens, Track 3). The GradStore, and with it the forward graph, is dropped before
/// returning (docs/candle.md §5): only the parameters' gradients are kept.
pub fn accumulate_micro_batch(
    model: &Gpt,
    x: &Tensor,
    y: &Tensor,
    compute: DType,
    sink: Option<&mut dyn LayerInputSink>,
    accum: usize,
    grads: &mut GradSum,
) -> Result<Tensor> {
    let loss = model.loss(x, y, compute, sink)?;
    let (value, scaled) = match model.cfg.loss {
        Reduction::Mean => (loss.detach(), (loss / accum as f64)?),
        Reduction::Sum => ((loss.detach() / y.elem_count() as f64)?, loss),
    };
    let value = value.to_dtype(DType::F64)?;
    let gs = scaled.backward()?;
    for (name, var) in model.vars() {
        let g = gs
            .get(var.as_tensor())
            .ok_or_else(|| anyhow!("no gradient for {name}"))?;
        grads.add(name, g)?;
    }
    Ok(value)
}

/// Mean loss over the fixed validation budget from the start of the val shards, with no graph.
/// In a data-parallel run each process evaluates every `world`-th micro-batch and the sums are
/// added across processes.
pub fn validate(
    model: &Gpt,
    loader: &mut Loader,
    steps: usize,
    device: &Device,
    dtype: DType,
) -> Result<f64> {
    loader.reset()?;
    let t = model.cfg.seq_len;
    let (rank, world) = (super::dist::rank(), super::dist::size());
    let mut sum = 0f64;
    for i in 0..steps {
        let w = loader
            .next_step()?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("val loader returned no window"))?;
        if i % world != rank {
            continue;
        }
        let b = w.inputs.len() / t;
        let x = Tensor::from_slice(&w.inputs, (b, t), device)?;
        let y = Tensor::from_slice(&w.targets, (b, t), device)?;
        sum += model.eval_loss(&x, &y, dtype)? as f64;
    }
    let mut total = [sum];
    super::dist::sum_f64(&mut total);
    Ok(total[0] / steps as f64)
}

/// Sum `grads` over the processes of a data-parallel run, in one all-reduce of one flat buffer
/// (every parameter in name order) rather than one call per parameter. Each process's gradients
/// are already divided by the step's total micro-batch count, so the sum is the step's mean.
pub fn all_reduce_grads(grads: &mut Grads) -> Result<()> {
    super::dist::sum_tensors(&mut grads.values_mut().collect::<Vec<_>>())
}

/// A 64-bit hash of every weight's fp32 bytes, in name order.
pub fn weights_hash(model: &Gpt) -> Result<u64> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (name, v) in model.vars() {
        h.update(name.as_bytes());
        let w = v
            .as_tensor()
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for x in w {
            h.update(x.to_le_bytes());
        }
    }
    let d = h.finalize();
    Ok(u64::from_le_bytes(d[..8].try_into().unwrap_or_default()))
}
