//! AdamW with bias correction and decoupled weight decay (Loshchilov & Hutter; docs/optimizers.md
//! "adamw.rs").

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use candle_core::{Tensor, Var};

use super::config::AdamWConfig;
use super::{grad_of, Grads, Group, Keeper, Optimizer, Slot, Visitor, EMBEDDINGS};
use crate::cpu::inplace::AdamStep;

/// AdamW over a set of named fp32 parameters; moments are fp32 like the parameters.
pub struct AdamW {
    group: Group,
    cfg: AdamWConfig,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    /// Completed steps t (bias correction uses t + 1 on the next step).
    t: u64,
    keeper: Keeper,
}

impl AdamW {
    pub fn new(label: &str, cfg: AdamWConfig, params: BTreeMap<String, Var>) -> Result<Self> {
        let mut m = BTreeMap::new();
        let mut v = BTreeMap::new();
        for (name, var) in &params {
            m.insert(name.clone(), var.as_tensor().zeros_like()?);
            v.insert(name.clone(), var.as_tensor().zeros_like()?);
        }
        Ok(AdamW {
            group: Group::new(label, params),
            cfg,
            m,
            v,
            t: 0,
            keeper: Keeper::default(),
        })
    }

    fn decay_of(&self, name: &str) -> f64 {
        if EMBEDDINGS.contains(&name) && !self.cfg.decay_embedding {
            0.0
        } else {
            self.cfg.weight_decay
        }
    }
}

impl Optimizer for AdamW {
    fn group(&self) -> &Group {
        &self.group
    }

    fn base_lr(&self) -> f64 {
        self.cfg.lr
    }

    fn step(&mut self, grads: &Grads, lr: f64) -> Result<()> {
        let (b1, b2) = self.cfg.betas;
        let t = self.t + 1;
        let bc1 = 1.0 - b1.powi(t as i32);
        let bc2 = 1.0 - b2.powi(t as i32);
        for (name, var) in &self.group.params {
            let g = grad_of(grads, name, var)?;
            let decay = self.decay_of(name);
            let (m, v) = (
                self.m.get_mut(name).context("no first moment")?,
                self.v.get_mut(name).context("no second moment")?,
            );
            AdamStep {
                b1,
                b2,
                alpha: 1.0 - lr * decay,
                lr,
                bc1,
                bc2,
                eps: self.cfg.eps,
            }
            .apply(var, m, v, &g)?;
            // ΔW for the diagnostics, from the moments the step used (only when armed).
            if let Some(k) = self.keeper.entry(name) {
                let denom = ((&*v / bc2)?.sqrt()? + self.cfg.eps)?;
                k.update = Some((((&*m / bc1)? / denom)? * lr)?);
            }
        }
        self.t = t;
        Ok(())
    }

    fn keeper(&mut self) -> Option<&mut Keeper> {
        Some(&mut self.keeper)
    }

    /// `step`, then `m.NAME` and `v.NAME` per parameter.
    fn visit_state(&mut self, visit: &mut Visitor<'_>) -> Result<()> {
        visit("step".to_string(), Slot::Counter(&mut self.t))?;
        for (name, m) in self.m.iter_mut() {
            visit(format!("m.{name}"), Slot::Tensor(m))?;
            let v = self.v.get_mut(name).expect("v has the keys of m");
            visit(format!("v.{name}"), Slot::Tensor(v))?;
        }
        Ok(())
    }
}
