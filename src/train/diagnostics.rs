//! The optimizer diagnostics of one step (docs/diagnostics.md): gradient spectra of every 2-D
//! hidden matrix before the optimizer step, the update and the optimizer's own values after it,
//! as one `diag` record. Every number comes from singular or eigenvalues
//! ([`crate::optim::spectral`]); the trainer keeps the time spent here off the clock.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::log::{Diag, LayerDiag};
use crate::optim::kept::Precond;
use crate::optim::muon::is_packed_qkv;
use crate::optim::newton_muon::conditioning;
use crate::optim::spectral::{singular_values, Norms, SvMethod};
use crate::optim::{Grads, Kept, OptimizerSet, EMBEDDING};

/// How the trainer computes singular values (the faster of the two at equal accuracy for what is
/// reported: docs/perf.md, `speedrun bench diag`).
pub const SV_METHOD: SvMethod = SvMethod::Gram;

/// One reported matrix: a 2-D hidden parameter, or one third of a packed q/k/v projection.
#[derive(Debug, Clone)]
pub struct Part {
    /// The record's name: the parameter's, with `.q`, `.k` or `.v` for a third of `c_attn`.
    pub name: String,
    pub param: String,
    /// Rows of the parameter (a third for q/k/v; the whole matrix otherwise).
    pub rows: std::ops::Range<usize>,
    /// Whether this is a third of the parameter.
    pub third: bool,
}

impl Part {
    /// Rows `self.rows` of `t` (a view when the part is the whole matrix).
    fn of(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.narrow(0, self.rows.start, self.rows.len())?)
    }
}

/// The reported matrices of a model, given its parameters' shapes by name: every 2-D parameter but
/// the tied embedding/head, a packed `c_attn` split into its q, k and v thirds.
pub fn parts<'a>(shapes: impl IntoIterator<Item = (&'a String, &'a [usize])>) -> Vec<Part> {
    let mut out = Vec::new();
    for (name, dims) in shapes {
        if dims.len() != 2 || name == EMBEDDING {
            continue;
        }
        if is_packed_qkv(name, dims) {
            let c = dims[1];
            for (k, suffix) in ["q", "k", "v"].into_iter().enumerate() {
                out.push(Part {
                    name: format!("{name}.{suffix}"),
                    param: name.clone(),
                    rows: k * c..(k + 1) * c,
                    third: true,
                });
            }
        } else {
            out.push(Part {
                name: name.clone(),
                param: name.clone(),
                rows: 0..dims[0],
                third: false,
            });
        }
    }
    out
}

/// A diagnostics pass over one step, between [`Pass::before`] and [`Pass::after`].
pub struct Pass {
    step: usize,
    method: SvMethod,
    parts: Vec<Part>,
    layers: BTreeMap<String, LayerDiag>,
    ms: f64,
}

/// The `diag` record of a step and the milliseconds its pass took.
pub struct Done {
    pub record: Diag,
    pub ms: f64,
}

impl Pass {
    /// Before the optimizer step that completes step `step`: the gradient spectra of every part
    /// of `grads` (the step's accumulated, all-reduced gradients), and the optimizers armed to
    /// keep what they apply. None, with nothing armed, when there is no hidden matrix. The
    /// trainer computes singular values by [`SV_METHOD`].
    pub fn before(
        step: usize,
        grads: &Grads,
        opt: &mut OptimizerSet,
        device: &Device,
        method: SvMethod,
    ) -> Result<Option<Pass>> {
        // Work queued for the step is the step's, not the diagnostics'.
        device.synchronize()?;
        let t0 = Instant::now();
        let parts = parts(grads.iter().map(|(k, g)| (k, g.dims())));
        if parts.is_empty() {
            return Ok(None);
        }
        let mats = parts
            .iter()
            .map(|p| p.of(&grads[&p.param]))
            .collect::<Result<Vec<_>>>()?;
        let sigmas = singular_values(&mats.iter().collect::<Vec<_>>(), method)?;
        let layers = parts
            .iter()
            .zip(&sigmas)
            .map(|(p, s)| (p.name.clone(), grad_fields(&Norms::of(s))))
            .collect();
        opt.keep_next_step();
        Ok(Some(Pass {
            step,
            method,
            parts,
            layers,
            ms: t0.elapsed().as_secs_f64() * 1e3,
        }))
    }

    /// After the optimizer step (and its device sync): the update and the optimizers' own values
    /// from what they kept, and the finished record.
    pub fn after(mut self, opt: &mut OptimizerSet, device: &Device) -> Result<Done> {
        device.synchronize()?;
        let t0 = Instant::now();
        let kept = opt.take_kept();
        let updates = self.fill_updates(&kept)?;
        self.fill_ns(&kept, &updates)?;
        self.fill_precond(&kept)?;
        for p in &self.parts {
            let (Some(k), Some(l)) = (kept.get(&p.param), self.layers.get_mut(&p.name)) else {
                continue;
            };
            for &(field, v) in &k.values {
                match field {
                    "tau" => l.tau = Some(v),
                    "kept_rank" => l.kept_rank = Some(v),
                    _ => {}
                }
            }
        }
        Ok(Done {
            record: Diag {
                step: self.step,
                layers: self.layers,
            },
            ms: self.ms + t0.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// `update_rms` and `update_spec` of every part whose parameter kept its update; returns the
    /// update's singular values by part name.
    fn fill_updates(
        &mut self,
        kept: &BTreeMap<String, Kept>,
    ) -> Result<BTreeMap<String, Vec<f64>>> {
        let mut mats = Vec::new();
        let mut names = Vec::new();
        for p in &self.parts {
            if let Some(u) = kept.get(&p.param).and_then(|k| k.update.as_ref()) {
                mats.push(p.of(u)?);
                names.push(p.name.clone());
            }
        }
        let sigmas = singular_values(&mats.iter().collect::<Vec<_>>(), self.method)?;
        for ((name, m), s) in names.iter().zip(&mats).zip(&sigmas) {
            let n = Norms::of(s);
            let l = self.layer(name)?;
            l.update_rms = Some(n.fro / (m.elem_count() as f64).sqrt());
            l.update_spec = Some(n.spec);
        }
        Ok(names.into_iter().zip(sigmas).collect())
    }

    /// `ns_sigma_min` and `ns_sigma_max`: the extreme singular values of the Newton–Schulz output
    /// O before the shape scale, per third where the thirds were orthogonalised apart. Where the
    /// part is the matrix orthogonalised, its update lr·s·O has O's spectrum times lr·s
    /// (`updates`, by part name); a packed matrix orthogonalised whole gets one spectrum of its
    /// own, shared by its thirds.
    fn fill_ns(
        &mut self,
        kept: &BTreeMap<String, Kept>,
        updates: &BTreeMap<String, Vec<f64>>,
    ) -> Result<()> {
        // (the parts, O's singular values times the divisor, the divisor).
        let mut done: Vec<(Vec<String>, Vec<f64>, f64)> = Vec::new();
        // (the whole packed matrix, its scale, its thirds, their parameter).
        let mut jobs: Vec<(Tensor, f64, Vec<String>, &str)> = Vec::new();
        for p in &self.parts {
            let Some(ns) = kept.get(&p.param).and_then(|k| k.ns.as_ref()) else {
                continue;
            };
            let whole_qkv = p.third && !ns.split_qkv;
            match updates.get(&p.name) {
                Some(s) if !whole_qkv && ns.lr > 0.0 => {
                    done.push((vec![p.name.clone()], s.clone(), ns.lr * ns.scale));
                }
                _ if !whole_qkv => {
                    jobs.push((p.of(&ns.scaled)?, ns.scale, vec![p.name.clone()], &p.param));
                }
                _ => match jobs.iter_mut().find(|j| j.3 == p.param) {
                    Some(job) => job.2.push(p.name.clone()),
                    None => {
                        jobs.push((ns.scaled.clone(), ns.scale, vec![p.name.clone()], &p.param))
                    }
                },
            }
        }
        let mats: Vec<&Tensor> = jobs.iter().map(|j| &j.0).collect();
        let sigmas = singular_values(&mats, self.method)?;
        done.extend(
            jobs.into_iter()
                .zip(sigmas)
                .map(|((_, scale, names, _), s)| (names, s, scale)),
        );
        for (names, s, divisor) in done {
            for name in names {
                let l = self.layer(&name)?;
                l.ns_sigma_max = s.first().map(|x| x / divisor);
                l.ns_sigma_min = s.last().map(|x| x / divisor);
            }
        }
        Ok(())
    }

    /// The record's entry of part `name`.
    fn layer(&mut self, name: &str) -> Result<&mut LayerDiag> {
        self.layers
            .get_mut(name)
            .context("a part without gradient fields")
    }

    /// `k_cond`, `ridge_share` and `ridge_dominated` of Newton-Muon's preconditioner, the same on
    /// the three thirds of a packed q/k/v (they share its input).
    fn fill_precond(&mut self, kept: &BTreeMap<String, Kept>) -> Result<()> {
        let wanted: Vec<(&String, &Precond)> = kept
            .iter()
            .filter_map(|(name, k)| k.precond.as_ref().map(|p| (name, p)))
            .filter(|(name, _)| self.parts.iter().any(|p| &p.param == *name))
            .collect();
        let fields = wanted
            .par_iter()
            .map(|(_, p)| conditioning(p))
            .collect::<Result<Vec<_>>>()?;
        for ((name, _), c) in wanted.iter().zip(fields) {
            for p in self.parts.iter().filter(|p| &p.param == *name) {
                let l = self
                    .layers
                    .get_mut(&p.name)
                    .context("a part without gradient fields")?;
                l.k_cond = Some(c.k_cond);
                l.ridge_share = Some(c.ridge_share);
                l.ridge_dominated = Some(c.ridge_dominated);
            }
        }
        Ok(())
    }
}

/// The gradient fields of a [`LayerDiag`] from the gradient's norms.
fn grad_fields(n: &Norms) -> LayerDiag {
    LayerDiag {
        grad_fro: n.fro,
        grad_nuc: n.nuc,
        grad_spec: n.spec,
        stable_rank: n.stable_rank,
        nuc_fro_ratio: n.nuc_fro_ratio,
        ..LayerDiag::default()
    }
}
