//! Work shared out over the processes, as record 4 splits its Newton–Schulz matrices over its 8
//! GPUs: every process holds the same inputs, computes its share of the jobs, and one all-reduce
//! of a flat buffer, zero outside each job's owner (x + 0 = x exactly), hands every process every
//! result: an all-gather.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Shape, Tensor};

/// One piece of work: its cost (for balancing) and the shapes of the tensors it yields.
pub struct Job {
    pub cost: usize,
    pub outputs: Vec<Shape>,
}

/// The owner of every job: the costliest first, each to the least-loaded process. Every process
/// computes the same map.
pub fn owners(costs: &[usize], world: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].cmp(&costs[a]).then(a.cmp(&b)));
    let mut load = vec![0usize; world.max(1)];
    let mut owner = vec![0; costs.len()];
    for i in order {
        let p = (0..load.len()).min_by_key(|&p| load[p]).unwrap_or(0);
        load[p] += costs[i];
        owner[i] = p;
    }
    owner
}

/// Run `jobs`, each on its owner only, and return every job's outputs on every process.
/// `compute` gets the indices of this process's jobs (all of them in a single process, where
/// nothing is copied) and returns their outputs in that order. Shared outputs come back as fp32
/// on `device`.
pub fn run_shared<F>(jobs: &[Job], device: &Device, compute: F) -> Result<Vec<Vec<Tensor>>>
where
    F: FnOnce(&[usize]) -> Result<Vec<Vec<Tensor>>>,
{
    let world = super::size();
    if world == 1 {
        let all: Vec<usize> = (0..jobs.len()).collect();
        return compute(&all);
    }
    let costs: Vec<usize> = jobs.iter().map(|j| j.cost).collect();
    let owner = owners(&costs, world);
    let me = super::rank();
    let mine: Vec<usize> = (0..jobs.len()).filter(|&i| owner[i] == me).collect();
    let done = compute(&mine)?;
    if done.len() != mine.len() {
        bail!(
            "shared work: {} results for {} jobs",
            done.len(),
            mine.len()
        );
    }
    let mut done: BTreeMap<usize, Vec<Tensor>> = mine.into_iter().zip(done).collect();
    let mut pieces = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        match done.remove(&i) {
            Some(outs) => {
                if outs.len() != job.outputs.len()
                    || outs.iter().zip(&job.outputs).any(|(t, s)| t.shape() != s)
                {
                    bail!("shared work: job {i} yielded other shapes than it declared");
                }
                for t in outs {
                    pieces.push(t.to_dtype(DType::F32)?.flatten_all()?);
                }
            }
            None => {
                for s in &job.outputs {
                    pieces.push(Tensor::zeros(s.elem_count(), DType::F32, device)?);
                }
            }
        }
    }
    let mut flat = Tensor::cat(&pieces, 0)?;
    super::sum_tensors(&mut [&mut flat])?;
    let mut at = 0;
    jobs.iter()
        .map(|job| {
            job.outputs
                .iter()
                .map(|s| {
                    let n = s.elem_count();
                    let t = flat.narrow(0, at, n)?.reshape(s)?;
                    at += n;
                    Ok(t)
                })
                .collect()
        })
        .collect()
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
        let cost = |r: usize, c: usize| r * c * r.min(c);
        let mut costs = Vec::new();
        for (r, c, n) in [(d, d, 48), (4 * d, d, 12), (d, 4 * d, 12)] {
            costs.extend(std::iter::repeat_n(cost(r, c), n));
        }
        let total: usize = costs.iter().sum();
        for world in [2, 4, 8] {
            let owner = owners(&costs, world);
            assert_eq!(owner.len(), 72);
            let mut load = vec![0usize; world];
            for (i, &p) in owner.iter().enumerate() {
                load[p] += costs[i];
            }
            for l in load {
                assert!(
                    l <= total / world + cost(4 * d, d),
                    "world {world}: load {l} of {total}"
                );
            }
        }
    }

    /// In one process every job runs here and comes back as computed.
    #[test]
    fn a_single_process_computes_every_job() {
        let jobs: Vec<Job> = (0..3)
            .map(|i| Job {
                cost: i,
                outputs: vec![Shape::from((2, 1))],
            })
            .collect();
        let out = run_shared(&jobs, &Device::Cpu, |mine| {
            mine.iter()
                .map(|&i| Ok(vec![Tensor::new(&[[i as f32], [1.0]], &Device::Cpu)?]))
                .collect()
        })
        .unwrap();
        let firsts: Vec<f32> = out
            .iter()
            .map(|o| o[0].get(0).unwrap().get(0).unwrap().to_scalar().unwrap())
            .collect();
        assert_eq!(firsts, vec![0.0, 1.0, 2.0]);
    }
}
