//! Neon ("From Muon to Neon"; docs/optimizers.md "neon.rs"): steepest descent on the momentum
//! matrix under the nuclear norm (rank-1 update) or the F* norm (soft-thresholded top singular
//! values).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use candle_core::{Shape, Tensor, Var};

use super::config::{NeonConfig, NeonFStarConfig, NeonForm};
use super::muon::Momentum;
use super::topk::{default_start, fstar_tau, top_singular};
use super::{apply_update, Grads, Group, Keeper, Optimizer, Slot, Visitor};

/// What both Neon forms keep: the group, momentum buffers, and one warm-start block per matrix
/// (checkpointed so resume is bit-exact).
struct NeonCore {
    group: Group,
    momentum: Momentum,
    warm: BTreeMap<String, Tensor>,
    keeper: Keeper,
}

impl NeonCore {
    /// Warm blocks of `rank + oversample` columns (capped at min(rows, cols)).
    fn new(
        label: &str,
        params: BTreeMap<String, Var>,
        (momentum, nesterov): (f64, bool),
        rank: usize,
        oversample: usize,
    ) -> Result<Self> {
        let momentum = Momentum::new(momentum, nesterov, &params)?;
        let mut warm = BTreeMap::new();
        for (name, var) in &params {
            let (r, c) = var
                .dims2()
                .with_context(|| format!("Neon needs 2-D matrices, `{name}` is not"))?;
            let p = (rank + oversample).min(r.min(c));
            warm.insert(name.clone(), default_start(c, p, var.device())?);
        }
        Ok(NeonCore {
            group: Group::new(label, params),
            momentum,
            warm,
            keeper: Keeper::default(),
        })
    }

    /// For every matrix: fold its gradient into the momentum M, let `delta` turn (name, M, warm
    /// block) into (update, next warm block, three solver statistics), and apply
    /// W ← W(1 − lr·wd) − update. In a data-parallel run each process solves its cost-balanced
    /// share of the matrices and the results are all-gathered, as Muon shares Newton–Schulz.
    /// Returns each matrix's statistics, in parameter order.
    fn step(
        &mut self,
        grads: &Grads,
        lr: f64,
        weight_decay: f64,
        mut delta: impl FnMut(&str, &Tensor, Option<&Tensor>) -> Result<(Tensor, Tensor, [f32; 3])>,
    ) -> Result<Vec<(String, [f32; 3])>> {
        let mut moms = Vec::with_capacity(self.group.params.len());
        for (name, var) in &self.group.params {
            moms.push(self.momentum.update_from(grads, name, var)?);
        }
        let Some(device) = moms.first().map(|m| m.device().clone()) else {
            return Ok(Vec::new());
        };
        let names: Vec<&String> = self.group.params.keys().collect();
        let jobs = names
            .iter()
            .zip(&moms)
            .map(|(name, m)| {
                let (r, c) = m.dims2()?;
                let warm = self.warm.get(*name).context("no warm block")?;
                Ok(crate::dist::Job {
                    cost: r * c * warm.dim(1)?,
                    outputs: vec![m.shape().clone(), warm.shape().clone(), Shape::from(3)],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let warm = &self.warm;
        let done = crate::dist::run_shared(&jobs, &device, |mine| {
            mine.iter()
                .map(|&j| {
                    let (upd, block, stats) = delta(names[j], &moms[j], warm.get(names[j]))?;
                    Ok(vec![upd, block, Tensor::new(&stats, &device)?])
                })
                .collect()
        })?;
        let mut stats = Vec::with_capacity(done.len());
        for ((name, var), out) in self.group.params.iter().zip(done) {
            let [upd, block, st]: [Tensor; 3] = out
                .try_into()
                .map_err(|_| anyhow::anyhow!("Neon: a matrix's result is incomplete"))?;
            self.keeper.update(name, &upd);
            apply_update(var, lr, weight_decay, &upd, 1.0)?;
            self.warm.insert(name.clone(), block);
            let st = st.to_vec1::<f32>()?;
            stats.push((name.clone(), [st[0], st[1], st[2]]));
        }
        Ok(stats)
    }

    /// `momentum.NAME` per matrix, then `warm.NAME` per matrix.
    fn visit_state(&mut self, visit: &mut Visitor<'_>) -> Result<()> {
        self.momentum.visit_state(visit)?;
        for (name, b) in self.warm.iter_mut() {
            visit(format!("warm.{name}"), Slot::Tensor(b))?;
        }
        Ok(())
    }
}

/// Nuclear-norm Neon: δW = −lr·scale·u₁v₁ᵀ ("lmo") or −lr·σ₁·u₁v₁ᵀ ("sigma").
pub struct Neon {
    core: NeonCore,
    cfg: NeonConfig,
    /// Solver iterations used by the last step, summed over matrices.
    pub last_iters: usize,
}

impl Neon {
    pub fn new(label: &str, cfg: NeonConfig, params: BTreeMap<String, Var>) -> Result<Self> {
        let mom = (cfg.momentum, cfg.nesterov);
        let core = NeonCore::new(label, params, mom, 1, cfg.oversample)?;
        Ok(Neon {
            core,
            cfg,
            last_iters: 0,
        })
    }
}

impl Optimizer for Neon {
    fn group(&self) -> &Group {
        &self.core.group
    }
    fn base_lr(&self) -> f64 {
        self.cfg.lr
    }

    fn step(&mut self, grads: &Grads, lr: f64) -> Result<()> {
        let cfg = &self.cfg;
        let stats = self.core.step(grads, lr, cfg.weight_decay, |_, m, warm| {
            let top = top_singular(m, 1, cfg.oversample, warm, cfg.iters, cfg.tol)?;
            let (r, c) = m.dims2()?;
            let coef = match cfg.form {
                NeonForm::Lmo => cfg.scale.factor(r, c),
                NeonForm::Sigma => top.s[0],
            };
            let upd = top.u.matmul(&top.v.t()?)?;
            Ok((
                (upd * (lr * coef))?,
                top.block,
                [top.iters as f32, 0.0, 0.0],
            ))
        })?;
        self.last_iters = stats.iter().map(|(_, s)| s[0] as usize).sum();
        Ok(())
    }

    fn visit_state(&mut self, visit: &mut Visitor<'_>) -> Result<()> {
        self.core.visit_state(visit)
    }

    fn keeper(&mut self) -> Option<&mut Keeper> {
        Some(&mut self.core.keeper)
    }

    /// `solver_iterations`: top-triplet iterations of the last step, summed over matrices.
    fn diagnostics(&self) -> Vec<(String, f64)> {
        vec![("solver_iterations".to_string(), self.last_iters as f64)]
    }
}

/// F*-norm Neon: δW = −lr·U·diag([σᵢ − τ]₊)·Vᵀ with the exact τ of [`fstar_tau`].
pub struct NeonFStar {
    core: NeonCore,
    cfg: NeonFStarConfig,
    /// Matrices whose τ rule wanted more than `max_rank` triplets on the last step.
    pub truncated: usize,
    /// Active rank k per matrix on the last step.
    pub last_ranks: BTreeMap<String, usize>,
}

impl NeonFStar {
    pub fn new(label: &str, cfg: NeonFStarConfig, params: BTreeMap<String, Var>) -> Result<Self> {
        let mom = (cfg.momentum, cfg.nesterov);
        let core = NeonCore::new(label, params, mom, cfg.max_rank, cfg.oversample)?;
        Ok(NeonFStar {
            core,
            cfg,
            truncated: 0,
            last_ranks: BTreeMap::new(),
        })
    }
}

/// The F* direction U·diag([σ − τ]₊)·Vᵀ from `rank` computed triplets; also returns the active
/// rank, τ, whether the rule ran past the computed triplets (truncated), and the next warm block.
pub fn fstar_direction(
    m: &Tensor,
    rank: usize,
    oversample: usize,
    warm: Option<&Tensor>,
    iters: usize,
    tol: f64,
) -> Result<(Tensor, usize, f64, bool, Tensor)> {
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
    Ok((dir, k, tau, truncated, top.block))
}

impl Optimizer for NeonFStar {
    fn group(&self) -> &Group {
        &self.core.group
    }
    fn base_lr(&self) -> f64 {
        self.cfg.lr
    }

    fn step(&mut self, grads: &Grads, lr: f64) -> Result<()> {
        let cfg = &self.cfg;
        let stats = self.core.step(grads, lr, cfg.weight_decay, |_, m, warm| {
            let (dir, k, tau, cut, block) =
                fstar_direction(m, cfg.max_rank, cfg.oversample, warm, cfg.iters, cfg.tol)?;
            let cut = if cut { 1.0 } else { 0.0 };
            Ok(((dir * lr)?, block, [k as f32, cut, tau as f32]))
        })?;
        for (name, s) in &stats {
            if let Some(k) = self.core.keeper.entry(name) {
                k.values
                    .extend([("tau", s[2] as f64), ("kept_rank", s[0] as f64)]);
            }
        }
        self.truncated = stats.iter().filter(|(_, s)| s[1] > 0.5).count();
        self.last_ranks = stats
            .into_iter()
            .map(|(name, s)| (name, s[0] as usize))
            .collect();
        Ok(())
    }

    fn visit_state(&mut self, visit: &mut Visitor<'_>) -> Result<()> {
        self.core.visit_state(visit)
    }

    fn keeper(&mut self) -> Option<&mut Keeper> {
        Some(&mut self.core.keeper)
    }

    /// `truncated` (matrices whose τ rule ran past `max_rank` on the last step), and the last
    /// step's active ranks: `rank_min`, `rank_mean`, `rank_max` over the matrices.
    fn diagnostics(&self) -> Vec<(String, f64)> {
        let mut out = vec![("truncated".to_string(), self.truncated as f64)];
        let ranks: Vec<f64> = self.last_ranks.values().map(|&k| k as f64).collect();
        if !ranks.is_empty() {
            let min = ranks.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = ranks.iter().cloned().fold(0.0, f64::max);
            let mean = ranks.iter().sum::<f64>() / ranks.len() as f64;
            out.extend([
                ("rank_min".to_string(), min),
                ("rank_mean".to_string(), mean),
                ("rank_max".to_string(), max),
            ]);
        }
        out
    }
}
