//! Optimizers: one per file behind the small [`Optimizer`] trait, and a registry that maps
//! `--optim NAME` to parameter groups (docs/optimizers.md).
//!
//! [`build`] routes the model's parameters to groups and returns an [`OptimizerSet`], which the
//! trainer steps, checkpoints (`state`/`load_state`), asks for `diagnostics`, and uses as a
//! [`crate::model::LayerInputSink`] (through [`LayerInputRouter`]) for the groups that want layer
//! inputs. [`OptimConfig`] lives under `[optim]` in the TOML presets.
//!
//! Files: `config` (the `[optim]` tables), `adamw`, `newton_schulz`, `muon` (also the shared
//! momentum buffers and the batched orthogonalisation), `newton_muon`, `neon` (rank-1 and F*),
//! `topk` (warm-started subspace iteration, the F* τ rule), `linalg` (host Cholesky inverse and
//! Jacobi eigensolver), `state` (state declared once, saved and loaded from the declaration),
//! `kept` (what a step keeps for the run's diagnostics), `spectral` (singular values and norms
//! for the diagnostics), `bench` (`bench_step`). Tests compare against `scripts/golden_optim.py` through
//! `tests/fixtures/optim_golden.npz`.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, Var};

use crate::model::LayerInputSink;

pub mod adamw;
pub mod bench;
pub mod config;
pub mod kept;
pub mod linalg;
pub mod muon;
pub mod neon;
pub mod newton_muon;
pub mod newton_schulz;
mod ns_cpu;
mod registry;
pub mod spectral;
pub mod state;
#[cfg(test)]
mod tests;
pub mod topk;

pub use adamw::AdamW;
pub use config::{
    AdamWConfig, MuonConfig, NeonConfig, NeonFStarConfig, NeonForm, NewtonMuonConfig, OptimConfig,
    Scale,
};
pub use kept::{Keeper, Kept};
pub use muon::Muon;
pub use neon::{Neon, NeonFStar};
pub use newton_muon::NewtonMuon;
pub use registry::{build, Method};
pub use state::{Slot, Visitor};

/// Gradients by parameter name (fp32, same shape as the parameter).
pub type Grads = BTreeMap<String, Tensor>;

/// The label and parameters of one group; every optimizer keeps one.
pub struct Group {
    /// Group label used in logs and state names, e.g. "adamw" or "muon".
    pub label: String,
    /// The parameters this group updates, by name.
    pub params: BTreeMap<String, Var>,
}

impl Group {
    pub fn new(label: &str, params: BTreeMap<String, Var>) -> Self {
        Group {
            label: label.to_string(),
            params,
        }
    }
}

/// One optimizer over one group of parameters. State is named tensors so it can be checkpointed.
pub trait Optimizer {
    /// The group's label and parameters.
    fn group(&self) -> &Group;
    /// Base learning rate (before the schedule multiplier).
    fn base_lr(&self) -> f64;
    /// Apply one update with the already-scheduled learning rate `lr`.
    fn step(&mut self, grads: &Grads, lr: f64) -> Result<()>;
    /// Apply one update at the schedule's multiplier `lr_mult`: `step` at base lr × `lr_mult`,
    /// unless the optimizer schedules per-parameter rates of its own (per-family overrides).
    fn step_mult(&mut self, grads: &Grads, lr_mult: f64) -> Result<()> {
        let lr = self.base_lr() * lr_mult;
        self.step(grads, lr)
    }
    /// Declare the checkpointed state once: call `visit` on every `(name, slot)`, names unique
    /// within the group and in a fixed order. [`Optimizer::state`] and
    /// [`Optimizer::load_state`] are built on it.
    fn visit_state(&mut self, visit: &mut Visitor<'_>) -> Result<()>;

    /// Group label used in logs and state names.
    fn label(&self) -> &str {
        &self.group().label
    }
    /// Names of the parameters this group updates.
    fn param_names(&self) -> Vec<String> {
        self.group().params.keys().cloned().collect()
    }
    /// All declared state as named tensors.
    fn state(&mut self) -> Result<Vec<(String, Tensor)>> {
        state::save(|v| self.visit_state(v))
    }
    /// Restore state written by [`Optimizer::state`].
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        load_group(self, state)
    }
    /// Named values for the run log (solver ranks, failure counts); none by default.
    fn diagnostics(&self) -> Vec<(String, f64)> {
        Vec::new()
    }
    /// Where this group files what a step applies when the trainer asks for diagnostics
    /// ([`OptimizerSet::keep_next_step`]); None keeps nothing.
    fn keeper(&mut self) -> Option<&mut Keeper> {
        None
    }
    /// Whether this group wants layer inputs during the forward passes of `step`.
    fn wants_layer_inputs(&self, _step: usize) -> bool {
        false
    }
    /// Receive one layer input (see [`LayerInputSink`]).
    fn record_layer_input(&mut self, _weight_name: &str, _x: &Tensor) -> Result<()> {
        Ok(())
    }
    /// Combine the layer-input statistics gathered so far this step with those of the other
    /// processes of a data-parallel run ([`crate::dist`]).
    fn reduce_layer_inputs(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Fill `opt`'s declared state from `state` (the default [`Optimizer::load_state`]).
pub(crate) fn load_group<O: Optimizer + ?Sized>(
    opt: &mut O,
    state: &HashMap<String, Tensor>,
) -> Result<()> {
    state::load(state, |v| opt.visit_state(v))
        .with_context(|| format!("optimizer group {}", opt.label()))
}

/// W ← W·(1 − lr·wd) − coef·dir, the decoupled weight decay and update every optimizer ends
/// with, in place (`cpu::inplace`).
pub(crate) fn apply_update(
    var: &Var,
    lr: f64,
    weight_decay: f64,
    dir: &Tensor,
    coef: f64,
) -> Result<()> {
    crate::cpu::inplace::axpby_var(var, 1.0 - lr * weight_decay, dir, -coef)
}

/// The groups of one run.
pub struct OptimizerSet {
    pub groups: Vec<Box<dyn Optimizer>>,
}

/// The tied embedding/head matrix, which stays on AdamW under every matrix optimizer.
pub const EMBEDDING: &str = "transformer.wte.weight";

/// Every name a token embedding has (record 4's, Track 3's).
pub const EMBEDDINGS: [&str; 2] = [EMBEDDING, "embed.weight"];
/// Every name an untied head's weight has (record 4's naming, Track 3's).
pub const HEADS: [&str; 2] = ["lm_head.weight", "proj.weight"];

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
            g.step_mult(grads, lr_mult)?;
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
    pub fn state(&mut self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for g in self.groups.iter_mut() {
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

    /// Every group's diagnostics, named `label.name` (`newton_muon.cholesky_failures`).
    pub fn diagnostics(&self) -> BTreeMap<String, f64> {
        self.groups
            .iter()
            .flat_map(|g| {
                g.diagnostics()
                    .into_iter()
                    .map(move |(k, v)| (format!("{}.{k}", g.label()), v))
            })
            .collect()
    }

    /// Make every group keep what its next step applies ([`Keeper`]).
    pub fn keep_next_step(&mut self) {
        for g in self.groups.iter_mut() {
            if let Some(k) = g.keeper() {
                k.arm();
            }
        }
    }

    /// What the groups kept since [`OptimizerSet::keep_next_step`], by parameter name.
    pub fn take_kept(&mut self) -> BTreeMap<String, Kept> {
        let mut out = BTreeMap::new();
        for g in self.groups.iter_mut() {
            if let Some(k) = g.keeper() {
                out.append(&mut k.take());
            }
        }
        out
    }

    /// Whether any group wants layer inputs during the forward passes of `step`.
    pub fn wants_layer_inputs(&self, step: usize) -> bool {
        self.groups.iter().any(|g| g.wants_layer_inputs(step))
    }

    /// [`Optimizer::reduce_layer_inputs`] of every group that gathered inputs on `step`.
    pub fn reduce_layer_inputs(&mut self, step: usize) -> Result<()> {
        for g in self.groups.iter_mut() {
            if g.wants_layer_inputs(step) {
                g.reduce_layer_inputs()?;
            }
        }
        Ok(())
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
