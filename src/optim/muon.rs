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
    let mut groups: Groups = BTreeMap::new();
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
    if crate::dist::size() > 1 {
        orthogonalize_shared(&groups, steps, dtype, scale, &mut blocks)?;
        return assemble(blocks);
    }
    for ((rows, cols), members) in groups {
        let stacked = Tensor::stack(&members.iter().map(|(_, _, t)| t).collect::<Vec<_>>(), 0)?;
        let o = newton_schulz(&stacked, steps, dtype)?;
        let s = scale.factor(rows, cols);
        for (j, (i, k, _)) in members.iter().enumerate() {
            blocks[*i][*k] = Some((o.get(j)? * s)?);
        }
    }
    assemble(blocks)
}

/// (item index, block index, block), grouped by block shape.
type Groups = BTreeMap<(usize, usize), Vec<(usize, usize, Tensor)>>;

/// Each item's blocks, joined back into its matrix.
fn assemble(blocks: Vec<Vec<Option<Tensor>>>) -> Result<Vec<Tensor>> {
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

/// The owner process of every block: the costliest first, each to the least-loaded process
/// (Newton–Schulz costs about rows·cols·min(rows, cols)). Every process computes the same map.
fn owners(groups: &Groups, world: usize) -> BTreeMap<((usize, usize), usize), usize> {
    let mut order: Vec<((usize, usize), usize, usize)> = groups
        .iter()
        .flat_map(|(&(r, c), m)| (0..m.len()).map(move |j| ((r, c), j, r * c * r.min(c))))
        .collect();
    order.sort_by(|a, b| b.2.cmp(&a.2));
    let mut load = vec![0usize; world];
    let mut owner = BTreeMap::new();
    for (shape, j, cost) in order {
        let p = (0..world).min_by_key(|&p| load[p]).unwrap_or(0);
        load[p] += cost;
        owner.insert((shape, j), p);
    }
    owner
}

/// Newton–Schulz shared out over the processes of a data-parallel run, which all hold the same
/// momenta: each orthogonalises its share of the blocks (balanced by cost, as record 4 splits
/// its matrices over its 8 GPUs), writes them into one flat buffer that is zero elsewhere, and
/// one all-reduce (x + 0 = x exactly) hands every process every block: an all-gather.
fn orthogonalize_shared(
    groups: &Groups,
    steps: usize,
    dtype: DType,
    scale: Scale,
    blocks: &mut [Vec<Option<Tensor>>],
) -> Result<()> {
    let owner = owners(groups, crate::dist::size());
    let me = crate::dist::rank();
    let mut flat: Vec<f32> = Vec::new();
    let mut layout = Vec::new();
    for (&(rows, cols), members) in groups {
        let mine: Vec<usize> = (0..members.len())
            .filter(|j| owner[&((rows, cols), *j)] == me)
            .collect();
        let mut done: BTreeMap<usize, Tensor> = BTreeMap::new();
        if !mine.is_empty() {
            let stacked =
                Tensor::stack(&mine.iter().map(|&j| &members[j].2).collect::<Vec<_>>(), 0)?;
            let o = newton_schulz(&stacked, steps, dtype)?;
            for (q, &j) in mine.iter().enumerate() {
                done.insert(j, o.get(q)?);
            }
        }
        let s = scale.factor(rows, cols);
        for (j, (i, k, t)) in members.iter().enumerate() {
            match done.get(&j) {
                Some(o) => flat.extend(
                    (o * s)?
                        .to_dtype(DType::F32)?
                        .flatten_all()?
                        .to_vec1::<f32>()?,
                ),
                None => flat.resize(flat.len() + rows * cols, 0.0),
            }
            layout.push((*i, *k, rows, cols, t.device().clone()));
        }
    }
    crate::dist::sum_f32(&mut flat);
    let mut at = 0;
    for (i, k, rows, cols, device) in layout {
        let n = rows * cols;
        blocks[i][k] = Some(Tensor::from_slice(
            &flat[at..at + n],
            (rows, cols),
            &device,
        )?);
        at += n;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The record-4 blocks (12 layers: q, k, v, attn.c_proj as 768², c_fc 3072×768, mlp.c_proj
    /// 768×3072) shared over 2, 4 and 8 processes: every block has one owner, and no process
    /// carries more than its fair share plus one of the largest blocks.
    #[test]
    fn newton_schulz_work_is_shared_evenly() {
        let d = 768;
        let z = Tensor::zeros((1, 1), DType::F32, &candle_core::Device::Cpu).unwrap();
        let mut groups: Groups = BTreeMap::new();
        for (r, c, n) in [(d, d, 48), (4 * d, d, 12), (d, 4 * d, 12)] {
            for i in 0..n {
                groups.entry((r, c)).or_default().push((i, 0, z.clone()));
            }
        }
        let cost = |r: usize, c: usize| r * c * r.min(c);
        let total: usize = groups.iter().map(|(&(r, c), m)| cost(r, c) * m.len()).sum();
        for world in [2, 4, 8] {
            let owner = owners(&groups, world);
            assert_eq!(owner.len(), 72);
            let mut load = vec![0usize; world];
            for (&((r, c), _), &p) in &owner {
                load[p] += cost(r, c);
            }
            let biggest = cost(4 * d, d);
            for l in load {
                assert!(
                    l <= total / world + biggest,
                    "world {world}: load {l} of {total}"
                );
            }
        }
    }
}
