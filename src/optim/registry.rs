//! The registry: the [`Method`] names a run can choose, and [`build`], which routes a model's
//! parameters to the groups of that method (record 4: AdamW on the tied embedding/head, the matrix
//! optimizer on every 2-D block matrix).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use candle_core::{DType, Var};
use serde::{Deserialize, Serialize};

use super::config::{AdamScope, AdamWConfig};
use super::{AdamW, Muon, Neon, NeonFStar, NewtonMuon, OptimConfig, Optimizer, OptimizerSet};
use super::{EMBEDDINGS, HEADS};

/// An optimizer method, as written in `optim.name`, `--optim` and the run logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Method {
    #[serde(rename = "adamw")]
    AdamW,
    #[serde(rename = "muon")]
    Muon,
    #[serde(rename = "newton-muon")]
    NewtonMuon,
    #[serde(rename = "neon")]
    Neon,
    #[serde(rename = "neon-fstar")]
    NeonFStar,
}

impl Method {
    /// Every method, in the order help texts and benches list them.
    pub const ALL: [Method; 5] = [
        Method::AdamW,
        Method::Muon,
        Method::NewtonMuon,
        Method::Neon,
        Method::NeonFStar,
    ];

    /// The registry name (`newton-muon`).
    pub fn name(self) -> &'static str {
        match self {
            Method::AdamW => "adamw",
            Method::Muon => "muon",
            Method::NewtonMuon => "newton-muon",
            Method::Neon => "neon",
            Method::NeonFStar => "neon-fstar",
        }
    }

    /// One-line description for help texts.
    pub fn about(self) -> &'static str {
        match self {
            Method::AdamW => "AdamW on every parameter (record-2 style baseline)",
            Method::Muon => "record-4 Muon: Nesterov momentum, Newton-Schulz orthogonalisation",
            Method::NewtonMuon => "Muon right-preconditioned by the layer inputs' second moment",
            Method::Neon => "rank-1 nuclear-norm step from the top singular triplet",
            Method::NeonFStar => "F*-norm step U diag([sigma - tau]+) V^T",
        }
    }

    /// "adamw, muon, newton-muon, neon, neon-fstar".
    pub fn list() -> String {
        Method::ALL.map(Method::name).join(", ")
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match Method::ALL.into_iter().find(|m| m.name() == s) {
            Some(m) => Ok(m),
            None => bail!("unknown optimizer `{s}`; valid names: {}", Method::list()),
        }
    }
}

/// What a parameter is to the optimizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Embedding,
    /// An untied head's weight.
    Head,
    /// A 1-D parameter: a bias or a norm's gains.
    Vector,
    /// A 2-D block matrix.
    Matrix,
}

fn role(name: &str, var: &Var) -> Role {
    if EMBEDDINGS.contains(&name) {
        Role::Embedding
    } else if HEADS.contains(&name) {
        Role::Head
    } else if var.rank() != 2 {
        Role::Vector
    } else {
        Role::Matrix
    }
}

type Params = BTreeMap<String, Var>;

/// Route `params` (sorted by name) to the groups of `cfg.name`. `ns_dtype` is the dtype of
/// Newton–Schulz (see [`crate::device::Exec`]).
///
/// The block matrices go to the method's matrix optimizer; the rest to AdamW: a tied model's
/// embedding (and any 1-D parameter) to `optim.head` (record 4), an untied model's embedding,
/// head weight and 1-D parameters to `optim.embed`, `optim.lm_head` and `optim.scalars`
/// (Track 3). `adamw` puts every parameter in one AdamW group (record 2), or, with
/// `optim.adamw.scope = "matrices"`, only the block matrices (Track 3's result #2).
pub fn build(cfg: &OptimConfig, params: &Params, ns_dtype: DType) -> Result<OptimizerSet> {
    let mut by_role: BTreeMap<u8, Params> = BTreeMap::new();
    for (k, v) in params {
        let slot = role(k, v) as u8;
        by_role
            .entry(slot)
            .or_default()
            .insert(k.clone(), v.clone());
    }
    let mut take = |r: Role| by_role.remove(&(r as u8)).unwrap_or_default();
    let (embedding, head, vectors, matrices) = (
        take(Role::Embedding),
        take(Role::Head),
        take(Role::Vector),
        take(Role::Matrix),
    );
    if cfg.name == Method::AdamW && cfg.adamw.scope == AdamScope::All {
        let group = AdamW::new("adamw", cfg.adamw.clone(), params.clone())?;
        return Ok(OptimizerSet {
            groups: vec![Box::new(group)],
        });
    }
    let n_embd = embedding
        .values()
        .next()
        .map(|v| v.dims()[1])
        .unwrap_or_else(|| matrices.values().map(|v| v.dims()[1]).min().unwrap_or(1));
    let mut groups = aux_groups(cfg, embedding, head, vectors)?;
    groups.push(matrix_group(cfg, matrices, ns_dtype, n_embd)?);
    Ok(OptimizerSet { groups })
}

/// The AdamW groups of everything but the block matrices.
fn aux_groups(
    cfg: &OptimConfig,
    embedding: Params,
    head: Params,
    vectors: Params,
) -> Result<Vec<Box<dyn Optimizer>>> {
    let mut groups: Vec<Box<dyn Optimizer>> = Vec::new();
    let mut push = |label: &str, c: &AdamWConfig, p: Params| -> Result<()> {
        if !p.is_empty() {
            groups.push(Box::new(AdamW::new(label, c.clone(), p)?));
        }
        Ok(())
    };
    if head.is_empty() {
        let mut head_cfg = cfg.head.clone();
        if cfg.name == Method::NewtonMuon {
            // NM-1 raises the tied head's lr with its own (train_gpt_newton_muon_1.py:744).
            head_cfg.lr = cfg.newton_muon.head_lr;
        }
        let mut tied = embedding;
        tied.extend(vectors);
        push("head", &head_cfg, tied)?;
    } else {
        push("embed", &cfg.embed, embedding)?;
        push("lm_head", &cfg.lm_head, head)?;
        push("scalars", &cfg.scalars, vectors)?;
    }
    Ok(groups)
}

/// The method's optimizer over the block matrices.
fn matrix_group(
    cfg: &OptimConfig,
    matrices: Params,
    ns_dtype: DType,
    n_embd: usize,
) -> Result<Box<dyn Optimizer>> {
    Ok(match cfg.name {
        Method::AdamW => Box::new(AdamW::new("adamw", cfg.adamw.clone(), matrices)?),
        Method::Muon => Box::new(Muon::new("muon", cfg.muon.clone(), matrices, ns_dtype)?),
        // block = 0 means n_embd, the width of the embedding.
        Method::NewtonMuon => Box::new(NewtonMuon::new(
            "newton_muon",
            cfg.newton_muon.clone(),
            matrices,
            ns_dtype,
            n_embd,
        )?),
        Method::Neon => Box::new(Neon::new("neon", cfg.neon.clone(), matrices)?),
        Method::NeonFStar => Box::new(NeonFStar::new(
            "neon_fstar",
            cfg.neon_fstar.clone(),
            matrices,
        )?),
    })
}

#[cfg(test)]
mod tests {
    use super::Method;

    #[test]
    fn names_round_trip_and_unknown_lists_all() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.name()));
        }
        let e = "sgd".parse::<Method>().unwrap_err().to_string();
        assert!(e.contains("sgd") && e.contains("neon-fstar"), "{e}");
    }
}
