//! Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks") in its
//! modded-nanogpt record-4 form: SGD momentum (Nesterov), Newton–Schulz orthogonalisation, shape
//! scale, W ← W(1 − lr·wd) − lr·scale·O.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use candle_core::{DType, Tensor, Var};

use super::config::{MuonConfig, Scale};
use super::newton_schulz::newton_schulz;
use super::{apply_update, grad_of, Grads, Group, Optimizer, Slot, Visitor};

/// SGD momentum buffers shared by Muon, Newton-Muon and Neon: B ← μB + G, and the update
/// direction U = G + μB (Nesterov) or U = B.
pub struct Momentum {
    pub mu: f64,
    pub nesterov: bool,
    bufs: BTreeMap<String, Tensor>,
}

impl Momentum {
    /// Zero buffers for every parameter (so `state()` is complete before the first step).
    pub fn new(mu: f64, nesterov: bool, params: &BTreeMap<String, Var>) -> Result<Self> {
        let mut bufs = BTreeMap::new();
        for (name, var) in params {
            bufs.insert(name.clone(), var.as_tensor().zeros_like()?);
        }
        Ok(Momentum { mu, nesterov, bufs })
    }

    /// Fold `g` into the buffer of `name` and return the update direction.
    pub fn update(&mut self, name: &str, g: &Tensor) -> Result<Tensor> {
        let buf = self
            .bufs
            .get(name)
            .with_context(|| format!("no momentum buffer for `{name}`"))?;
        let b = ((buf * self.mu)? + g)?;
        let u = if self.nesterov {
            (g + (&b * self.mu)?)?
        } else {
            b.clone()
        };
        self.bufs.insert(name.to_string(), b);
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
fn is_packed_qkv(name: &str, dims: &[usize]) -> bool {
    name.ends_with("attn.c_attn.weight") && dims.len() == 2 && dims[0] == 3 * dims[1]
}

/// Orthogonalise each `(name, U)` and multiply by its shape scale. Same-shape blocks (after the
/// QKV split, which only the record-4 scale does) go through Newton–Schulz together as one
/// batch, which on a GPU turns 48+ small launches into a handful of batched GEMMs.
pub fn orthogonalize_scaled(
    items: &[(String, Tensor)],
    steps: usize,
    dtype: DType,
    scale: Scale,
) -> Result<Vec<Tensor>> {
    // (item index, block index, block) grouped by block shape.
    type Blocks = Vec<(usize, usize, Tensor)>;
    let mut groups: BTreeMap<(usize, usize), Blocks> = BTreeMap::new();
    let mut n_blocks = Vec::with_capacity(items.len());
    for (i, (name, u)) in items.iter().enumerate() {
        let (rows, cols) = u
            .dims2()
            .with_context(|| format!("Muon needs 2-D matrices, `{name}` is not"))?;
        if scale == Scale::Record4 && is_packed_qkv(name, u.dims()) {
            for k in 0..3 {
                groups
                    .entry((cols, cols))
                    .or_default()
                    .push((i, k, u.narrow(0, k * cols, cols)?));
            }
            n_blocks.push(3);
        } else {
            groups
                .entry((rows, cols))
                .or_default()
                .push((i, 0, u.clone()));
            n_blocks.push(1);
        }
    }
    let mut blocks: Vec<Vec<Option<Tensor>>> = n_blocks.iter().map(|&n| vec![None; n]).collect();
    for ((rows, cols), members) in groups {
        let stacked = Tensor::stack(&members.iter().map(|(_, _, t)| t).collect::<Vec<_>>(), 0)?;
        let o = newton_schulz(&stacked, steps, dtype)?;
        let s = scale.factor(rows, cols);
        for (j, (i, k, _)) in members.iter().enumerate() {
            blocks[*i][*k] = Some((o.get(j)? * s)?);
        }
    }
    blocks
        .into_iter()
        .map(|bs| {
            let bs: Vec<Tensor> = bs
                .into_iter()
                .map(|b| b.expect("every block filled"))
                .collect();
            Ok(if bs.len() == 1 {
                bs[0].clone()
            } else {
                Tensor::cat(&bs, 0)?
            })
        })
        .collect()
}

/// Muon over the 2-D hidden matrices.
pub struct Muon {
    group: Group,
    pub cfg: MuonConfig,
    ns_dtype: DType,
    momentum: Momentum,
}

impl Muon {
    pub fn new(
        label: &str,
        cfg: MuonConfig,
        params: BTreeMap<String, Var>,
        ns_dtype: DType,
    ) -> Result<Self> {
        let momentum = Momentum::new(cfg.momentum, cfg.nesterov, &params)?;
        Ok(Muon {
            group: Group::new(label, params),
            cfg,
            ns_dtype,
            momentum,
        })
    }
}

impl Optimizer for Muon {
    fn group(&self) -> &Group {
        &self.group
    }

    fn base_lr(&self) -> f64 {
        self.cfg.lr
    }

    fn step(&mut self, grads: &Grads, lr: f64) -> Result<()> {
        let mut items = Vec::with_capacity(self.group.params.len());
        for (name, var) in &self.group.params {
            items.push((name.clone(), self.momentum.update_from(grads, name, var)?));
        }
        let updates =
            orthogonalize_scaled(&items, self.cfg.ns_steps, self.ns_dtype, self.cfg.scale)?;
        for ((name, _), o) in items.iter().zip(updates) {
            let var = &self.group.params[name];
            apply_update(var, lr, self.cfg.weight_decay, (o * lr)?)?;
        }
        Ok(())
    }

    fn visit_state(&mut self, visit: &mut Visitor<'_>) -> Result<()> {
        self.momentum.visit_state(visit)
    }
}
