//! Newton-Muon (arXiv 2604.01472, the authors' record-4 script "NM-1"; docs/optimizers.md
//! "newton_muon.rs"): G ← G·K⁻¹ before Muon, with K the damped running second moment of the
//! layer input.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Shape, Tensor, Var};
use rayon::prelude::*;

use super::config::{MuonConfig, NewtonMuonConfig};
use super::kept::Precond;
use super::linalg::cholesky_inverse;
use super::muon::Muon;
use super::spectral::symmetric_eigenvalues;
use super::{grad_of, load_group, Grads, Group, Keeper, Optimizer, Slot, Visitor};

/// One input statistic: S (EMA of XᵀX/N), its damped inverse K⁻¹, and this step's accumulator.
struct Stat {
    s: Tensor,
    inv: Tensor,
    acc: Option<Tensor>,
    count: usize,
}

/// Newton-Muon over the 2-D hidden matrices.
pub struct NewtonMuon {
    cfg: NewtonMuonConfig,
    muon: Muon,
    /// Per statistic: its column blocks (one block = the whole input). Keyed by the weight
    /// whose input it is; q, k and v of Track 3 share q's ([`stat_key`]).
    stats: BTreeMap<String, Vec<Stat>>,
    /// Every weight's statistic key.
    keys: BTreeMap<String, String>,
    /// Completed steps (decides which steps are refresh steps).
    t: u64,
    /// Factorisations that failed on the last refresh (their previous inverse was kept).
    pub cholesky_failures: usize,
    /// Weights that received no layer input on the last refresh (their statistic was not
    /// updated). Per refresh rather than cumulative, so a resumed run reports what a straight
    /// one does.
    pub missing_inputs: usize,
}

impl NewtonMuon {
    /// `n_embd` resolves `block = 0`: inputs wider than the block size (mlp.c_proj, in = 4·d) get
    /// a block-diagonal statistic of in/block separate block × block matrices.
    pub fn new(
        label: &str,
        cfg: NewtonMuonConfig,
        params: BTreeMap<String, Var>,
        ns_dtype: DType,
        n_embd: usize,
    ) -> Result<Self> {
        let block = if cfg.block == 0 { n_embd } else { cfg.block };
        let mut stats = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for (name, var) in &params {
            let (_, cols) = var
                .dims2()
                .with_context(|| format!("Newton-Muon needs 2-D matrices, `{name}` is not"))?;
            let key = stat_key(name, &params);
            keys.insert(name.clone(), key.clone());
            if let std::collections::btree_map::Entry::Vacant(e) = stats.entry(key) {
                e.insert(fresh_blocks(name, cols, block, cfg.init, var.device())?);
            }
        }
        let mcfg = MuonConfig {
            lr: cfg.lr,
            momentum: cfg.momentum,
            nesterov: cfg.nesterov,
            ns_steps: cfg.ns_steps,
            scale: cfg.scale,
            weight_decay: cfg.weight_decay,
            momentum_form: cfg.momentum_form,
            ns_coeffs: cfg.ns_coeffs,
            ns_form: cfg.ns_form,
            families: cfg.families,
        };
        let muon = Muon::new(label, mcfg, params, ns_dtype)?;
        Ok(NewtonMuon {
            cfg,
            muon,
            stats,
            keys,
            t: 0,
            cholesky_failures: 0,
            missing_inputs: 0,
        })
    }

    /// The statistic behind weight `name`.
    fn blocks_of(&self, name: &str) -> Result<&Vec<Stat>> {
        self.keys
            .get(name)
            .and_then(|k| self.stats.get(k))
            .with_context(|| format!("Newton-Muon has no statistic for `{name}`"))
    }

    /// G·K⁻¹, block-diagonal over column blocks where the statistic is split.
    pub fn precondition(&self, name: &str, g: &Tensor) -> Result<Tensor> {
        let blocks = self.blocks_of(name)?;
        if blocks.len() == 1 {
            return Ok(g.matmul(&blocks[0].inv)?);
        }
        let b = blocks[0].inv.dim(0)?;
        let parts = blocks
            .iter()
            .enumerate()
            .map(|(j, st)| Ok(g.narrow(1, j * b, b)?.matmul(&st.inv)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 1)?)
    }

    /// Whether `step` (counted from 0) refreshes the statistics: NM-1's `_regime_schedule_`
    /// takes `t = step + 1` and refreshes when `t % 32 == 0` (train_gpt_newton_muon_1.py:134-137,
    /// with `global_step = step` set at :823), so steps 0 … R−2 are plain Muon and the first
    /// refresh folds in the layer inputs of step R−1.
    pub fn is_refresh_step(&self, step: u64) -> bool {
        (step + 1).is_multiple_of(self.cfg.refresh.max(1) as u64)
    }

    /// The current inverse of block `j` of `name`'s statistic (for tests and diagnostics).
    pub fn inverse(&self, name: &str, j: usize) -> Option<&Tensor> {
        self.blocks_of(name)
            .ok()
            .and_then(|b| b.get(j))
            .map(|s| &s.inv)
    }

    /// Fold this step's averaged statistic into S (EMA) and refactor K for every block that got
    /// inputs. Factorisations run on the host, in parallel over blocks, and in a data-parallel run
    /// each process factors its cost-balanced share, the inverses then all-gathered. S and K⁻¹ are
    /// stored in fp32 (docs/optimizers.md: all state is fp32), but the factorisation accumulates
    /// in f64: it costs nothing extra at 768² and keeps K⁻¹ accurate to fp32 rounding at the
    /// ridge-limited condition numbers (≤ ~5·in); a non-positive pivot is still reported and the
    /// old inverse kept.
    fn refresh(&mut self) -> Result<()> {
        let alpha = self.cfg.ema;
        self.missing_inputs = 0;
        let mut due: Vec<&mut Stat> = Vec::new();
        for (_, blocks) in self.stats.iter_mut() {
            if blocks.iter().any(|st| st.acc.is_none()) {
                self.missing_inputs += 1;
            }
            for st in blocks.iter_mut() {
                let Some(acc) = st.acc.take() else { continue };
                let c = (acc / st.count as f64)?;
                st.count = 0;
                st.s = ((&st.s * (1.0 - alpha))? + (c * alpha)?)?;
                due.push(st);
            }
        }
        let Some(device) = due.first().map(|st| st.s.device().clone()) else {
            self.cholesky_failures = 0;
            return Ok(());
        };
        let jobs = due
            .iter()
            .map(|st| {
                let n = st.s.dim(0)?;
                // The inverse, then 1 where the factorisation succeeded.
                let outputs = vec![Shape::from((n, n)), Shape::from(1)];
                Ok(crate::dist::Job {
                    cost: n * n * n,
                    outputs,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ridge = self.cfg.ridge;
        let done = crate::dist::run_shared(&jobs, &device, |mine| {
            let hosts = mine
                .iter()
                .map(|&j| Ok(due[j].s.flatten_all()?.to_vec1::<f32>()?))
                .collect::<Result<Vec<_>>>()?;
            let inverses: Vec<Option<Vec<f32>>> =
                hosts.par_iter().map(|s| damped_inverse(s, ridge)).collect();
            mine.iter()
                .zip(inverses)
                .map(|(&j, inv)| {
                    let n = due[j].s.dim(0)?;
                    let (inv, ok) = match inv {
                        Some(v) => (Tensor::from_vec(v, (n, n), &device)?, 1f32),
                        None => (Tensor::zeros((n, n), DType::F32, &device)?, 0f32),
                    };
                    Ok(vec![inv, Tensor::new(&[ok], &device)?])
                })
                .collect()
        })?;
        let mut failures = 0;
        for (st, mut out) in due.into_iter().zip(done) {
            let ok = out[1].to_vec1::<f32>()?[0] > 0.5;
            if ok {
                st.inv = out.swap_remove(0);
            } else {
                failures += 1;
                if crate::dist::is_root() {
                    let n = st.s.dim(0)?;
                    eprintln!("newton-muon: Cholesky of a {n}x{n} statistic failed; keeping the previous inverse");
                }
            }
        }
        self.cholesky_failures = failures;
        Ok(())
    }
}

/// The statistic a weight's input feeds: its own, except that Track 3's separate k and v
/// share q's, as their inputs are one tensor (the q/k/v hooks of the Newton-Muon entry record
/// it once, on `attn.q`: train_gpt_simple_newton_muon.py:181-186).
fn stat_key(name: &str, params: &BTreeMap<String, Var>) -> String {
    for kv in [".attn.k.weight", ".attn.v.weight"] {
        if let Some(stem) = name.strip_suffix(kv) {
            let q = format!("{stem}.attn.q.weight");
            if params.contains_key(&q) {
                return q;
            }
        }
    }
    name.to_string()
}

/// The column blocks of a fresh statistic for a weight of `cols` input columns: S₀ = init·I,
/// K⁻¹₀ = I, block-diagonal over blocks of `block` columns where the input is wider.
fn fresh_blocks(
    name: &str,
    cols: usize,
    block: usize,
    init: f64,
    device: &candle_core::Device,
) -> Result<Vec<Stat>> {
    let nb = if cols > block {
        if !cols.is_multiple_of(block) {
            bail!(
                "Newton-Muon: `{name}` has {cols} input columns, not a multiple of block {block}"
            );
        }
        cols / block
    } else {
        1
    };
    let b = cols / nb;
    let eye = Tensor::eye(b, DType::F32, device)?;
    (0..nb)
        .map(|_| {
            Ok(Stat {
                s: (&eye * init)?,
                inv: eye.clone(),
                acc: None,
                count: 0,
            })
        })
        .collect()
}

/// K⁻¹ for K = S + (ridge·tr(S)/n + 1e-8)·I, a ridge of `ridge` × the mean eigenvalue, from the
/// n × n statistic `s` (row-major); None where the Cholesky factorisation fails.
fn damped_inverse(s: &[f32], ridge: f64) -> Option<Vec<f32>> {
    let n = (s.len() as f64).sqrt() as usize;
    let damp = damping(s, ridge);
    let mut k: Vec<f64> = s.iter().map(|&x| x as f64).collect();
    for i in 0..n {
        k[i * n + i] += damp;
    }
    cholesky_inverse(&k, n).map(|v| v.into_iter().map(|x| x as f32).collect())
}

/// The ridge d = `ridge`·tr(S)/n + 1e-8 of K = S + d·I, for the n × n statistic `s` (row-major).
pub fn damping(s: &[f32], ridge: f64) -> f64 {
    let n = (s.len() as f64).sqrt() as usize;
    let trace: f64 = (0..n).map(|i| s[i * n + i] as f64).sum();
    ridge * trace / n as f64 + 1e-8
}

/// How the preconditioner K = blockdiag(S_j + d_j·I) of one matrix is conditioned
/// (docs/diagnostics.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditioning {
    /// λmax(K)/λmin(K) over all blocks.
    pub k_cond: f64,
    /// The ridge's share of the trace, Σ n_j·d_j / tr K.
    pub ridge_share: f64,
    /// The share of K's eigenvalues whose ridge d_j exceeds the statistic's own eigenvalue.
    pub ridge_dominated: f64,
}

/// The [`Conditioning`] of the K kept in `p`, from the eigenvalues of each S_j in f64 (those of
/// K are the same plus d_j).
pub fn conditioning(p: &Precond) -> Result<Conditioning> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut ridge_trace, mut trace) = (0.0, 0.0);
    let (mut dominated, mut total) = (0usize, 0usize);
    for s in &p.blocks {
        let n = s.dim(0)?;
        let host = s.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let d = damping(&host, p.ridge);
        let host: Vec<f64> = host.into_iter().map(f64::from).collect();
        // Ascending.
        let ev = symmetric_eigenvalues(&host, n)?;
        lo = lo.min(ev[0] + d);
        hi = hi.max(ev[n - 1] + d);
        ridge_trace += n as f64 * d;
        trace += ev.iter().sum::<f64>() + n as f64 * d;
        dominated += ev.iter().filter(|&&l| l < d).count();
        total += n;
    }
    Ok(Conditioning {
        k_cond: hi / lo,
        ridge_share: ridge_trace / trace,
        ridge_dominated: dominated as f64 / total as f64,
    })
}

impl Optimizer for NewtonMuon {
    fn group(&self) -> &Group {
        self.muon.group()
    }

    fn base_lr(&self) -> f64 {
        self.cfg.lr
    }

    fn step(&mut self, grads: &Grads, lr: f64) -> Result<()> {
        let mult = if self.cfg.lr != 0.0 {
            lr / self.cfg.lr
        } else {
            1.0
        };
        self.step_mult(grads, mult)
    }

    fn step_mult(&mut self, grads: &Grads, lr_mult: f64) -> Result<()> {
        if self.is_refresh_step(self.t) {
            self.refresh()?;
        }
        if let Some(keeper) = self.muon.keeper() {
            // The statistic behind the inverse this step applies (its last refresh).
            for (name, key) in &self.keys {
                if let (Some(k), Some(blocks)) = (keeper.entry(name), self.stats.get(key)) {
                    let blocks = blocks.iter().map(|st| st.s.clone()).collect();
                    let ridge = self.cfg.ridge;
                    k.precond = Some(Precond { blocks, ridge });
                }
            }
        }
        let mut pg = Grads::new();
        for (name, var) in &self.muon.group().params {
            let g = grad_of(grads, name, var)?;
            pg.insert(name.clone(), self.precondition(name, &g)?);
        }
        self.muon.step_mult(&pg, lr_mult)?;
        self.t += 1;
        Ok(())
    }

    /// `step`, Muon's `momentum.NAME`, then `stat.NAME.J` and `inv.NAME.J` per column block J.
    fn visit_state(&mut self, visit: &mut Visitor<'_>) -> Result<()> {
        visit("step".to_string(), Slot::Counter(&mut self.t))?;
        self.muon.visit_state(visit)?;
        for (name, blocks) in self.stats.iter_mut() {
            for (j, st) in blocks.iter_mut().enumerate() {
                visit(format!("stat.{name}.{j}"), Slot::Tensor(&mut st.s))?;
                visit(format!("inv.{name}.{j}"), Slot::Tensor(&mut st.inv))?;
            }
        }
        Ok(())
    }

    /// The declared state; a half-accumulated statistic is dropped.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        load_group(self, state)?;
        for st in self.stats.values_mut().flatten() {
            st.acc = None;
            st.count = 0;
        }
        Ok(())
    }

    /// `cholesky_failures` and `missing_inputs` of the last refresh.
    fn diagnostics(&self) -> Vec<(String, f64)> {
        vec![
            (
                "cholesky_failures".to_string(),
                self.cholesky_failures as f64,
            ),
            ("missing_inputs".to_string(), self.missing_inputs as f64),
        ]
    }

    fn keeper(&mut self) -> Option<&mut Keeper> {
        self.muon.keeper()
    }

    fn wants_layer_inputs(&self, step: usize) -> bool {
        self.is_refresh_step(step as u64)
    }

    /// Accumulate C = XᵀX/N (fp32) per column block; averaged over the micro-batches at refresh.
    /// Sums every block's accumulated statistic and its micro-batch count over the processes,
    /// so the refresh averages over every micro-batch of the step, as one process running all
    /// ranks would.
    fn reduce_layer_inputs(&mut self) -> Result<()> {
        let blocks: Vec<&mut Stat> = self.stats.values_mut().flatten().collect();
        let mut counts: Vec<f32> = blocks.iter().map(|st| st.count as f32).collect();
        crate::dist::sum_f32(&mut counts);
        let mut accs: Vec<&mut Tensor> = Vec::new();
        for (st, n) in blocks.into_iter().zip(counts) {
            st.count = n as usize;
            accs.extend(st.acc.as_mut());
        }
        crate::dist::sum_tensors(&mut accs)
    }

    fn record_layer_input(&mut self, weight_name: &str, x: &Tensor) -> Result<()> {
        let Some(blocks) = self.stats.get_mut(weight_name) else {
            return Ok(());
        };
        let x = x.to_dtype(DType::F32)?;
        let (n, cols) = x
            .dims2()
            .with_context(|| format!("layer input of `{weight_name}` must be (N, in)"))?;
        let b = blocks[0].s.dim(0)?;
        if cols != b * blocks.len() {
            bail!(
                "layer input of `{weight_name}` has {cols} columns, the weight has {}",
                b * blocks.len()
            );
        }
        for (j, st) in blocks.iter_mut().enumerate() {
            let xb = x.narrow(1, j * b, b)?;
            let c = (xb.t()?.matmul(&xb)? / n as f64)?;
            st.acc = Some(match st.acc.take() {
                Some(a) => (a + c)?,
                None => c,
            });
            st.count += 1;
        }
        Ok(())
    }
}
