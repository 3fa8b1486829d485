//! Neon (seed "From Muon to Neon"; spec "Neon"): steepest descent on the momentum matrix under
//! the nuclear norm (rank-1 update) or the F* norm (soft-thresholded top singular values).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use candle_core::{Tensor, Var};

use super::config::{NeonConfig, NeonFStarConfig, NeonForm};
use super::muon::Momentum;
use super::state::take_shaped;
use super::topk::{default_start, fstar_tau, top_singular};
use super::{grad_of, Grads, Optimizer};

/// Warm-start blocks (one per matrix) kept in the state so resume is bit-exact.
struct Warm {
    blocks: BTreeMap<String, Tensor>,
}

impl Warm {
    fn new(params: &BTreeMap<String, Var>, rank: usize, oversample: usize) -> Result<Self> {
        let mut blocks = BTreeMap::new();
        for (name, var) in params {
            let (r, c) = var
                .dims2()
                .with_context(|| format!("Neon needs 2-D matrices, `{name}` is not"))?;
            let p = (rank + oversample).min(r.min(c));
            blocks.insert(name.clone(), default_start(c, p, var.device())?);
        }
        Ok(Warm { blocks })
    }

    fn state(&self, out: &mut Vec<(String, Tensor)>) {
        for (name, b) in &self.blocks {
            out.push((format!("warm.{name}"), b.clone()));
        }
    }

    fn load(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for (name, b) in self.blocks.iter_mut() {
            let dims = b.dims().to_vec();
            let dev = b.device().clone();
            *b = take_shaped(state, &format!("warm.{name}"), &dims, &dev)?;
        }
        Ok(())
    }
}

/// Both Neon forms keep the same state: momentum buffers and the warm-start singular vectors.
fn neon_state(momentum: &Momentum, warm: &Warm) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    momentum.state(&mut out);
    warm.state(&mut out);
    out
}

fn load_neon_state(
    label: &str,
    momentum: &mut Momentum,
    warm: &mut Warm,
    params: &BTreeMap<String, Var>,
    state: &HashMap<String, Tensor>,
) -> Result<()> {
    momentum
        .load_state(state, params)
        .with_context(|| format!("optimizer group {label}"))?;
    warm.load(state)
        .with_context(|| format!("optimizer group {label}"))
}

/// Nuclear-norm Neon: δW = −lr·scale·u₁v₁ᵀ ("lmo") or −lr·σ₁·u₁v₁ᵀ ("sigma").
pub struct Neon {
    label: String,
    cfg: NeonConfig,
    params: BTreeMap<String, Var>,
    momentum: Momentum,
    warm: Warm,
    /// Solver iterations used by the last step, summed over matrices (for logs).
    pub last_iters: usize,
}

impl Neon {
    pub fn new(label: &str, cfg: NeonConfig, params: BTreeMap<String, Var>) -> Result<Self> {
        let momentum = Momentum::new(cfg.momentum, cfg.nesterov, &params)?;
        let warm = Warm::new(&params, 1, cfg.oversample)?;
        Ok(Neon {
            label: label.to_string(),
            cfg,
            params,
            momentum,
            warm,
            last_iters: 0,
        })
    }
}

impl Optimizer for Neon {
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
        self.last_iters = 0;
        for (name, var) in &self.params {
            let g = grad_of(grads, name, var)?;
            let m = self.momentum.update(name, &g)?;
            let top = top_singular(
                &m,
                1,
                self.cfg.oversample,
                self.warm.blocks.get(name),
                self.cfg.iters,
                self.cfg.tol,
            )?;
            self.last_iters += top.iters;
            let (r, c) = m.dims2()?;
            let coef = match self.cfg.form {
                NeonForm::Lmo => self.cfg.scale.factor(r, c),
                NeonForm::Sigma => top.s[0],
            };
            let upd = top.u.matmul(&top.v.t()?)?;
            let w = (var.as_tensor() * (1.0 - lr * self.cfg.weight_decay))?;
            var.set(&(w - (upd * (lr * coef))?)?)?;
            self.warm.blocks.insert(name.clone(), top.block);
        }
        Ok(())
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(neon_state(&self.momentum, &self.warm))
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        load_neon_state(
            &self.label,
            &mut self.momentum,
            &mut self.warm,
            &self.params,
            state,
        )
    }
}

/// F*-norm Neon: δW = −lr·U·diag([σᵢ − τ]₊)·Vᵀ with the exact τ of [`fstar_tau`].
pub struct NeonFStar {
    label: String,
    cfg: NeonFStarConfig,
    params: BTreeMap<String, Var>,
    momentum: Momentum,
    warm: Warm,
    /// Matrices whose τ rule wanted more than `max_rank` triplets (counted over the run).
    pub truncated: usize,
    /// Active rank k per matrix on the last step (for logs).
    pub last_ranks: BTreeMap<String, usize>,
}

impl NeonFStar {
    pub fn new(label: &str, cfg: NeonFStarConfig, params: BTreeMap<String, Var>) -> Result<Self> {
        let momentum = Momentum::new(cfg.momentum, cfg.nesterov, &params)?;
        let warm = Warm::new(&params, cfg.max_rank, cfg.oversample)?;
        Ok(NeonFStar {
            label: label.to_string(),
            cfg,
            params,
            momentum,
            warm,
            truncated: 0,
            last_ranks: BTreeMap::new(),
        })
    }
}

/// The F* direction U·diag([σ − τ]₊)·Vᵀ from `rank` computed triplets; also returns the active
/// rank and whether the rule ran past the computed triplets (truncated).
pub fn fstar_direction(
    m: &Tensor,
    rank: usize,
    oversample: usize,
    warm: Option<&Tensor>,
    iters: usize,
    tol: f64,
) -> Result<(Tensor, usize, bool, Tensor)> {
    let (r, c) = m.dims2()?;
    let rank = rank.min(r.min(c));
    let top = top_singular(m, rank, oversample, warm, iters, tol)?;
    let (k, tau, ran_out) = fstar_tau(&top.s);
    let truncated = ran_out && rank < r.min(c);
    let d: Vec<f32> = top.s[..k]
        .iter()
        .map(|&s| (s - tau).max(0.0) as f32)
        .collect();
    let d = Tensor::from_vec(d, (1, k), m.device())?;
    let u = top.u.narrow(1, 0, k)?.broadcast_mul(&d)?;
    let dir = u.matmul(&top.v.narrow(1, 0, k)?.t()?)?;
    Ok((dir, k, truncated, top.block))
}

impl Optimizer for NeonFStar {
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
        for (name, var) in &self.params {
            let g = grad_of(grads, name, var)?;
            let m = self.momentum.update(name, &g)?;
            let (dir, k, truncated, block) = fstar_direction(
                &m,
                self.cfg.max_rank,
                self.cfg.oversample,
                self.warm.blocks.get(name),
                self.cfg.iters,
                self.cfg.tol,
            )?;
            if truncated {
                self.truncated += 1;
            }
            self.last_ranks.insert(name.clone(), k);
            let w = (var.as_tensor() * (1.0 - lr * self.cfg.weight_decay))?;
            var.set(&(w - (dir * lr)?)?)?;
            self.warm.blocks.insert(name.clone(), block);
        }
        Ok(())
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(neon_state(&self.momentum, &self.warm))
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        load_neon_state(
            &self.label,
            &mut self.momentum,
            &mut self.warm,
            &self.params,
            state,
        )
    }
}
