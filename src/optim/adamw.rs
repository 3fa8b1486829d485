//! AdamW with bias correction and decoupled weight decay (spec "AdamW").

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use candle_core::{Tensor, Var};

use super::config::AdamWConfig;
use super::state::{take, take_scalar};
use super::{grad_of, Grads, Optimizer};

const EMBEDDING: &str = "transformer.wte.weight";

/// AdamW over a set of named fp32 parameters; moments are fp32 like the parameters.
pub struct AdamW {
    label: String,
    cfg: AdamWConfig,
    params: BTreeMap<String, Var>,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    /// Completed steps t (bias correction uses t + 1 on the next step).
    t: u64,
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
            label: label.to_string(),
            cfg,
            params,
            m,
            v,
            t: 0,
        })
    }

    /// Completed steps.
    pub fn steps(&self) -> u64 {
        self.t
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
    fn label(&self) -> &str {
        &self.label
    }

    fn param_names(&self) -> Vec<String> {
        self.params.keys().cloned().collect()
    }

    fn base_lr(&self) -> f64 {
        self.cfg.lr
    }

    fn step(&mut self, grads: &Grads, lr: f64) -> Result<()> {
        let (b1, b2) = self.cfg.betas;
        let t = self.t + 1;
        let bc1 = 1.0 - b1.powi(t as i32);
        let bc2 = 1.0 - b2.powi(t as i32);
        for (name, var) in &self.params {
            let g = grad_of(grads, name, var)?;
            let m = ((&self.m[name] * b1)? + (&g * (1.0 - b1))?)?;
            let v = ((&self.v[name] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            // m̂/(√v̂ + eps) with m̂ = m/bc1, v̂ = v/bc2 (spec), written as the same expression.
            let denom = ((&v / bc2)?.sqrt()? + self.cfg.eps)?;
            let upd = ((&m / bc1)? / denom)?;
            let w = var.as_tensor();
            let decayed = (w * (1.0 - lr * self.decay_of(name)))?;
            var.set(&(decayed - (upd * lr)?)?)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        self.t = t;
        Ok(())
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let dev = self.params.values().next().map(|v| v.device().clone());
        let dev = dev.unwrap_or(candle_core::Device::Cpu);
        let mut out = vec![("step".to_string(), Tensor::new(&[self.t as f64], &dev)?)];
        for name in self.params.keys() {
            out.push((format!("m.{name}"), self.m[name].clone()));
            out.push((format!("v.{name}"), self.v[name].clone()));
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let label = self.label.clone();
        self.t =
            take_scalar(state, "step").with_context(|| format!("optimizer group {label}"))? as u64;
        for (name, var) in &self.params {
            let m = take(state, &format!("m.{name}"), var)
                .with_context(|| format!("optimizer group {label}"))?;
            let v = take(state, &format!("v.{name}"), var)
                .with_context(|| format!("optimizer group {label}"))?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }
}
