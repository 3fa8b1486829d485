//! AdamW with bias correction and decoupled weight decay (Loshchilov & Hutter; docs/optimizers.md
//! "adamw.rs").

use std::collections::BTreeMap;

use anyhow::Result;
use candle_core::{Tensor, Var};

use super::config::AdamWConfig;
use super::{apply_update, grad_of, Grads, Group, Keeper, Optimizer, Slot, Visitor, EMBEDDING};

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
        if name == EMBEDDING && !self.cfg.decay_embedding {
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
            let m = ((&self.m[name] * b1)? + (&g * (1.0 - b1))?)?;
            let v = ((&self.v[name] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            // m̂/(√v̂ + eps) with m̂ = m/bc1, v̂ = v/bc2, written as the same expression.
            let denom = ((&v / bc2)?.sqrt()? + self.cfg.eps)?;
            let upd = ((&m / bc1)? / denom)?;
            let delta = (upd * lr)?;
            self.keeper.update(name, &delta);
            apply_update(var, lr, self.decay_of(name), delta)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
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
