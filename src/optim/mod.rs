//! Optimizers: one per file behind the small [`Optimizer`] trait, and a registry that maps
//! `--optim NAME` to parameter groups (`../shared/spec/optimizers.md`).
//!
//! INTERFACE CONTRACT (used by `train`; keep these signatures):
//! - [`OptimConfig`]: serde, lives under `[optim]` in the TOML presets.
//! - [`build`] routes the model's parameters to groups and returns an [`OptimizerSet`].
//! - [`OptimizerSet`]: `step`, `lrs`, `state`/`load_state`, `wants_layer_inputs`, and it is a
//!   [`crate::model::LayerInputSink`] that forwards to the groups that asked.
//!
//! Files: `config` (the `[optim]` tables), `adamw`, `newton_schulz`, `muon` (also the shared
//! momentum buffers and the batched orthogonalisation), `newton_muon`, `neon` (rank-1 and F*),
//! `topk` (warm-started subspace iteration, the F* τ rule), `linalg` (host Cholesky inverse and
//! Jacobi eigensolver), `state` (checked state lookup), `bench` (`bench_step`). Tests compare
//! against `scripts/golden_optim.py` through `tests/fixtures/optim_golden.npz`.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, Var};

use crate::model::LayerInputSink;

pub mod adamw;
pub mod bench;
pub mod config;
pub mod linalg;
pub mod muon;
pub mod neon;
pub mod newton_muon;
pub mod newton_schulz;
mod registry;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_neon;
pub mod topk;

pub use adamw::AdamW;
pub use config::{
    AdamWConfig, MuonConfig, NeonConfig, NeonFStarConfig, NeonForm, NewtonMuonConfig, OptimConfig,
    Scale,
};
pub use muon::Muon;
pub use neon::{Neon, NeonFStar};
pub use newton_muon::NewtonMuon;
pub use registry::{build, Method};

/// Gradients by parameter name (fp32, same shape as the parameter).
pub type Grads = BTreeMap<String, Tensor>;

/// One optimizer over one group of parameters. State is named tensors so it can be checkpointed.
pub trait Optimizer {
    /// Group label used in logs and state names, e.g. "adamw" or "muon".
    fn label(&self) -> &str;
    /// Names of the parameters this group updates.
    fn param_names(&self) -> Vec<String>;
    /// Base learning rate (before the schedule multiplier).
    fn base_lr(&self) -> f64;
    /// Apply one update with the already-scheduled learning rate `lr`.
    fn step(&mut self, grads: &Grads, lr: f64) -> Result<()>;
    /// All state as named tensors (names unique within the group).
    fn state(&self) -> Result<Vec<(String, Tensor)>>;
    /// Restore state written by [`Optimizer::state`].
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;
    /// Whether this group wants layer inputs during the forward passes of `step`.
    fn wants_layer_inputs(&self, _step: usize) -> bool {
        false
    }
    /// Receive one layer input (see [`LayerInputSink`]).
    fn record_layer_input(&mut self, _weight_name: &str, _x: &Tensor) -> Result<()> {
        Ok(())
    }
}

/// The groups of one run.
pub struct OptimizerSet {
    pub groups: Vec<Box<dyn Optimizer>>,
}

/// The tied embedding/head matrix, which stays on AdamW under every matrix optimizer.
pub const EMBEDDING: &str = "transformer.wte.weight";

/// The fp32 gradient of `name`, checked against the parameter's shape.
pub(crate) fn grad_of(grads: &Grads, name: &str, var: &Var) -> Result<Tensor> {
    let g = grads
        .get(name)
        .with_context(|| format!("no gradient for parameter `{name}`"))?;
    if g.dims() != var.dims() {
        bail!(
            "gradient of `{name}` has shape {:?}, the parameter {:?}",
            g.dims(),
            var.dims()
        );
    }
    Ok(g.to_dtype(DType::F32)?)
}

impl OptimizerSet {
    /// One update of every group; group lr = base lr × `lr_mult`.
    pub fn step(&mut self, grads: &Grads, lr_mult: f64) -> Result<()> {
        for g in self.groups.iter_mut() {
            let lr = g.base_lr() * lr_mult;
            g.step(grads, lr)?;
        }
        Ok(())
    }

    /// (label, scheduled lr) per group, for logs.
    pub fn lrs(&self, lr_mult: f64) -> Vec<(String, f64)> {
        self.groups
            .iter()
            .map(|g| (g.label().to_string(), g.base_lr() * lr_mult))
            .collect()
    }

    /// All state, names prefixed by group label (`muon.momentum.transformer.h.0...`).
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for g in &self.groups {
            for (k, t) in g.state()? {
                out.push((format!("{}.{}", g.label(), k), t));
            }
        }
        Ok(out)
    }

    /// Restore state written by [`OptimizerSet::state`].
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for g in self.groups.iter_mut() {
            let prefix = format!("{}.", g.label());
            let mine: HashMap<String, Tensor> = state
                .iter()
                .filter_map(|(k, t)| k.strip_prefix(&prefix).map(|s| (s.to_string(), t.clone())))
                .collect();
            g.load_state(&mine)?;
        }
        Ok(())
    }

    pub fn wants_layer_inputs(&self, step: usize) -> bool {
        self.groups.iter().any(|g| g.wants_layer_inputs(step))
    }
}

/// Forwards layer inputs to the groups that asked for them on this step.
pub struct LayerInputRouter<'a> {
    pub set: &'a mut OptimizerSet,
    pub step: usize,
}

impl LayerInputSink for LayerInputRouter<'_> {
    fn record(&mut self, weight_name: &str, x: &Tensor) -> Result<()> {
        for g in self.set.groups.iter_mut() {
            if g.wants_layer_inputs(self.step) {
                g.record_layer_input(weight_name, x)?;
            }
        }
        Ok(())
    }
}
