//! Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks") in its
//! modded-nanogpt record-4 form: SGD momentum (Nesterov), Newton–Schulz orthogonalisation, shape
//! scale, W ← W(1 − lr·wd) − lr·scale·O.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use candle_core::{DType, Tensor, Var};

use super::config::{MomentumForm, MuonConfig, Scale};
use super::kept::NsOutput;
use super::newton_schulz::{newton_schulz, NsSpec};
use super::{apply_update, grad_of, Grads, Group, Keeper, Optimizer, Slot, Visitor};
use crate::cpu::inplace::{axpby, lerp};

/// Momentum buffers shared by Muon, Newton-Muon and Neon, in one of two forms
/// ([`MomentumForm`]): record 4's B ← μB + G with the direction U = G + μB (Nesterov) or U = B,
/// or Track 3's M ← lerp(M, G, 1 − μ) with U = lerp(G, M, μ) or U = M.
pub struct Momentum {
    pub mu: f64,
    pub nesterov: bool,
    pub form: MomentumForm,
    bufs: BTreeMap<String, Tensor>,
}

impl Momentum {
    /// Zero buffers for every parameter (so `state()` is complete before the first step), in
    /// record 4's form.
    pub fn new(mu: f64, nesterov: bool, params: &BTreeMap<String, Var>) -> Result<Self> {
        let mut bufs = BTreeMap::new();
        for (name, var) in params {
            bufs.insert(name.clone(), var.as_tensor().zeros_like()?);
        }
        Ok(Momentum {
            mu,
            nesterov,
            form: MomentumForm::Sgd,
            bufs,
        })
    }

    /// The same buffers in `form`.
    pub fn with_form(mut self, form: MomentumForm) -> Self {
        self.form = form;
        self
    }

    /// Fold `g` into the buffer of `name` (in place) and return the update direction, a tensor
    /// of its own.
    pub fn update(&mut self, name: &str, g: &Tensor) -> Result<Tensor> {
        let buf = self
            .bufs
            .get_mut(name)
            .with_context(|| format!("no momentum buffer for `{name}`"))?;
        match self.form {
            MomentumForm::Sgd => axpby(buf, self.mu, g, 1.0)?,
            MomentumForm::Ema => lerp(buf, g, 1.0 - self.mu)?,
        }
        if !self.nesterov {
            return Ok(buf.copy()?);
        }
        let mut u = g.copy()?;
        match self.form {
            MomentumForm::Sgd => axpby(&mut u, 1.0, buf, self.mu)?,
            MomentumForm::Ema => lerp(&mut u, buf, self.mu)?,
        }
        Ok(u)
    }

    /// [`Momentum::update`] with the checked gradient of parameter `name`.
    pub fn update_from(&mut self, grads: &Grads, name: &str, var: &Var) -> Result<Tensor> {
        self.update(name, &grad_of(grads, name, var)?)
    }

    /// `momentum.NAME` per parameter.
    pub fn visit_state(&mut self, visit: &mut Visitor<'_>) -> Result<()> {
        for (name, b) in self.bufs.iter_mut() {
            visit(format!("momentum.{name}"), Slot::Tensor(b))?;
        }
        Ok(())
    }
}

/// Whether a parameter is the packed [q; k; v] projection that record 4 orthogonalises as three
/// separate (cols × cols) blocks (it kept q, k, v as separate Linears).
pub(crate) fn is_packed_qkv(name: &str, dims: &[usize]) -> bool {
    name.ends_with("attn.c_attn.weight") && dims.len() == 2 && dims[0] == 3 * dims[1]
}

/// Whether `scale` orthogonalises the packed QKV `name` as three blocks (only record 4's does).
fn splits_qkv(scale: Scale, name: &str, dims: &[usize]) -> bool {
    scale == Scale::Record4 && is_packed_qkv(name, dims)
}

/// The scaled Newton–Schulz output `o` of `name` with the scale it carries and the step's `lr`,
/// for the diagnostics.
fn ns_output(name: &str, o: &Tensor, scale: Scale, lr: f64) -> Result<NsOutput> {
    let (r, c) = o.dims2()?;
    let split_qkv = splits_qkv(scale, name, o.dims());
    Ok(NsOutput {
        scaled: o.clone(),
        scale: if split_qkv {
            scale.factor(c, c)
        } else {
            scale.factor(r, c)
        },
        split_qkv,
        lr,
    })
}

/// Orthogonalise each `(name, U)` and multiply by its shape scale. Same-shape blocks (after the
/// QKV split, which only the record-4 scale does) go through Newton–Schulz together as one
/// batch, which on a GPU turns 48+ small launches into a handful of batched GEMMs. In a
/// data-parallel run each process orthogonalises its cost-balanced share of the blocks and the
/// results are all-gathered (record 4 splits its matrices over its 8 GPUs the same way).
pub fn orthogonalize_scaled(
    items: &[(String, Tensor)],
    spec: NsSpec,
    dtype: DType,
    scale: Scale,
) -> Result<Vec<Tensor>> {
    let Some(device) = items.first().map(|(_, u)| u.device().clone()) else {
        return Ok(Vec::new());
    };
    // (item index, block) in item order; the packed QKV gives three blocks.
    let mut blocks: Vec<(usize, Tensor)> = Vec::new();
    for (i, (name, u)) in items.iter().enumerate() {
        let (_, cols) = u
            .dims2()
            .with_context(|| format!("Muon needs 2-D matrices, `{name}` is not"))?;
        if splits_qkv(scale, name, u.dims()) {
            for k in 0..3 {
                blocks.push((i, u.narrow(0, k * cols, cols)?));
            }
        } else {
            blocks.push((i, u.clone()));
        }
    }
    let jobs = blocks
        .iter()
        .map(|(_, b)| {
            let (r, c) = b.dims2()?;
            // Newton–Schulz costs about rows·cols·min(rows, cols).
            Ok(crate::dist::Job {
                cost: r * c * r.min(c),
                outputs: vec![b.shape().clone()],
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let done = crate::dist::run_shared(&jobs, &device, |mine| {
        let mine: Vec<&Tensor> = mine.iter().map(|&j| &blocks[j].1).collect();
        Ok(newton_schulz_batched(&mine, spec, dtype, scale)?
            .into_iter()
            .map(|o| vec![o])
            .collect())
    })?;
    let mut out: Vec<Vec<Tensor>> = vec![Vec::new(); items.len()];
    for ((i, _), mut o) in blocks.iter().zip(done) {
        out[*i].push(o.remove(0));
    }
    out.into_iter()
        .map(|bs| {
            Ok(if bs.len() == 1 {
                bs.into_iter().next().expect("one block")
            } else {
                Tensor::cat(&bs, 0)?
            })
        })
        .collect()
}

/// Newton–Schulz on every matrix, those of equal shape stacked into one batch, each result
/// multiplied by its shape scale; in the order given.
fn newton_schulz_batched(
    mats: &[&Tensor],
    spec: NsSpec,
    dtype: DType,
    scale: Scale,
) -> Result<Vec<Tensor>> {
    let mut by_shape: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (q, m) in mats.iter().enumerate() {
        by_shape.entry(m.dims2()?).or_default().push(q);
    }
    let mut out: Vec<Option<Tensor>> = vec![None; mats.len()];
    for ((rows, cols), members) in by_shape {
        let stacked = Tensor::stack(&members.iter().map(|&q| mats[q]).collect::<Vec<_>>(), 0)?;
        let o = newton_schulz(&stacked, spec, dtype)?;
        let s = scale.factor(rows, cols);
        for (j, &q) in members.iter().enumerate() {
            out[q] = Some((o.get(j)? * s)?);
        }
    }
    Ok(out
        .into_iter()
        .map(|o| o.expect("every matrix done"))
        .collect())
}

/// Muon over the 2-D hidden matrices.
pub struct Muon {
    group: Group,
    pub cfg: MuonConfig,
    ns_dtype: DType,
    momentum: Momentum,
    keeper: Keeper,
}

impl Muon {
    pub fn new(
        label: &str,
        cfg: MuonConfig,
        params: BTreeMap<String, Var>,
        ns_dtype: DType,
    ) -> Result<Self> {
        let momentum =
            Momentum::new(cfg.momentum, cfg.nesterov, &params)?.with_form(cfg.momentum_form);
        Ok(Muon {
            group: Group::new(label, params),
            cfg,
            ns_dtype,
            momentum,
            keeper: Keeper::default(),
        })
    }

    /// The Newton–Schulz iteration of this group.
    fn ns_spec(&self) -> NsSpec {
        NsSpec {
            steps: self.cfg.ns_steps,
            coeffs: self.cfg.ns_coeffs,
            form: self.cfg.ns_form,
        }
    }

    /// (lr, wd) of parameter `name` at the schedule's multiplier: its family's overrides
    /// (`optim.<method>.families`), else the group's.
    fn rates(&self, name: &str, lr_mult: f64) -> (f64, f64) {
        let fam = self.cfg.families.of(name);
        let lr = fam.and_then(|f| f.lr).unwrap_or(self.cfg.lr);
        let wd = fam
            .and_then(|f| f.weight_decay)
            .unwrap_or(self.cfg.weight_decay);
        (lr * lr_mult, wd)
    }
}

impl Optimizer for Muon {
    fn group(&self) -> &Group {
        &self.group
    }

    fn base_lr(&self) -> f64 {
        self.cfg.lr
    }

    /// One step at the group's lr `lr` (per-family overrides scaled by `lr` / base lr).
    fn step(&mut self, grads: &Grads, lr: f64) -> Result<()> {
        let mult = if self.cfg.lr != 0.0 {
            lr / self.cfg.lr
        } else {
            1.0
        };
        self.step_mult(grads, mult)
    }

    fn step_mult(&mut self, grads: &Grads, lr_mult: f64) -> Result<()> {
        let mut items = Vec::with_capacity(self.group.params.len());
        for (name, var) in &self.group.params {
            items.push((name.clone(), self.momentum.update_from(grads, name, var)?));
        }
        let updates = orthogonalize_scaled(&items, self.ns_spec(), self.ns_dtype, self.cfg.scale)?;
        for ((name, _), o) in items.iter().zip(updates) {
            let var = &self.group.params[name];
            let (lr, wd) = self.rates(name, lr_mult);
            if let Some(k) = self.keeper.entry(name) {
                k.update = Some((&o * lr)?);
                k.ns = Some(ns_output(name, &o, self.cfg.scale, lr)?);
            }
            apply_update(var, lr, wd, &o, lr)?;
        }
        Ok(())
    }

    fn visit_state(&mut self, visit: &mut Visitor<'_>) -> Result<()> {
        self.momentum.visit_state(visit)
    }

    fn keeper(&mut self) -> Option<&mut Keeper> {
        Some(&mut self.keeper)
    }
}
