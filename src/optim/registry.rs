//! The registry: the [`Method`] names a run can choose, and [`build`], which routes a model's
//! parameters to the groups of that method (record 4: AdamW on the tied embedding/head, the matrix
//! optimizer on every 2-D block matrix).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use candle_core::{DType, Var};
use serde::{Deserialize, Serialize};

use super::EMBEDDING;
use super::{AdamW, Muon, Neon, NeonFStar, NewtonMuon, OptimConfig, Optimizer, OptimizerSet};

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

/// Route `params` (sorted by name) to the groups of `cfg.name`. `ns_dtype` is the dtype of
/// Newton–Schulz (see [`crate::device::Exec`]).
///
/// `adamw` puts every parameter in one AdamW group (record-2 style). The matrix optimizers get
/// an AdamW "head" group for the tied embedding (and any non-2-D parameter) and their own group
/// for every 2-D block matrix (record 4).
pub fn build(
    cfg: &OptimConfig,
    params: &BTreeMap<String, Var>,
    ns_dtype: DType,
) -> Result<OptimizerSet> {
    let (head, matrices): (BTreeMap<_, _>, BTreeMap<_, _>) = params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(k, v)| k == EMBEDDING || v.rank() != 2);
    let mut head_cfg = cfg.head.clone();
    let matrix: Box<dyn Optimizer> = match cfg.name {
        Method::AdamW => {
            let group = AdamW::new("adamw", cfg.adamw.clone(), params.clone())?;
            return Ok(OptimizerSet {
                groups: vec![Box::new(group)],
            });
        }
        Method::Muon => Box::new(Muon::new("muon", cfg.muon.clone(), matrices, ns_dtype)?),
        Method::NewtonMuon => {
            head_cfg.lr = cfg.newton_muon.head_lr;
            // block = 0 means n_embd, the width of the tied embedding.
            let n_embd = match params.get(EMBEDDING) {
                Some(v) => v.dims()[1],
                None => matrices.values().map(|v| v.dims()[1]).min().unwrap_or(1),
            };
            Box::new(NewtonMuon::new(
                "newton_muon",
                cfg.newton_muon.clone(),
                matrices,
                ns_dtype,
                n_embd,
            )?)
        }
        Method::Neon => Box::new(Neon::new("neon", cfg.neon.clone(), matrices)?),
        Method::NeonFStar => Box::new(NeonFStar::new(
            "neon_fstar",
            cfg.neon_fstar.clone(),
            matrices,
        )?),
    };
    let mut groups: Vec<Box<dyn Optimizer>> = Vec::new();
    if !head.is_empty() {
        groups.push(Box::new(AdamW::new("head", head_cfg, head)?));
    }
    groups.push(matrix);
    Ok(OptimizerSet { groups })
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
