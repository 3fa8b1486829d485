//! The contestants of a race (`--optims`), and the overrides a race refuses because it sets those
//! keys itself.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::optim::Method;

/// One contestant of a race.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contestant {
    pub optim: Method,
    pub label: String,
    pub sets: Vec<String>,
}

/// Keys a race sets for every run itself: the method (from `--optims`) and the seed (`--seeds`).
/// An override of either would train something else under the contestant's name.
const RACE_KEYS: [(&str, &str); 2] = [
    (
        "optim.name",
        "a contestant's method is the NAME of --optims",
    ),
    ("seed", "a race runs seeds 0..--seeds itself"),
];

/// Refuse an override (`KEY=VALUE`) of a key the race sets itself; `what` names the flag.
pub fn check_override(set: &str, what: &str) -> Result<()> {
    let key = set.split_once('=').map_or(set, |(k, _)| k).trim();
    if let Some((k, why)) = RACE_KEYS.iter().find(|(k, _)| *k == key) {
        bail!("{what} {set}: {k} cannot be overridden in a race ({why})");
    }
    Ok(())
}

/// Parse `NAME[@LABEL][:KEY=VALUE[;KEY=VALUE…]]`.
pub fn parse_spec(spec: &str) -> Result<Contestant> {
    let (head, sets) = match spec.split_once(':') {
        Some((h, rest)) => (
            h,
            rest.split(';')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        ),
        None => (spec, Vec::new()),
    };
    let (optim, label) = match head.split_once('@') {
        Some((o, l)) => (o.trim().to_string(), l.trim().to_string()),
        None => (head.trim().to_string(), head.trim().to_string()),
    };
    if optim.is_empty() || label.is_empty() {
        bail!("--optims {spec}: expected NAME[@LABEL][:KEY=VALUE;…]");
    }
    crate::train::run_dir::check_name(&label).with_context(|| format!("--optims {spec}: label"))?;
    let optim = optim.parse().with_context(|| format!("--optims {spec}"))?;
    for s in &sets {
        if !s.contains('=') {
            bail!("--optims {spec}: override `{s}` is not KEY=VALUE");
        }
        check_override(s, &format!("--optims {spec}:"))?;
    }
    Ok(Contestant { optim, label, sets })
}

/// Parse `--optims` values: specs, where plain names may be comma-separated (`adamw,muon`).
/// Labels must be distinct, and there must be at least one contestant.
pub fn parse_contestants(specs: &[String]) -> Result<Vec<Contestant>> {
    let mut contestants = Vec::new();
    for s in specs {
        if !s.contains(':') && s.contains(',') {
            for n in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                contestants.push(parse_spec(n)?);
            }
        } else {
            contestants.push(parse_spec(s)?);
        }
    }
    if contestants.is_empty() {
        bail!(
            "--optims {}: no contestant named (e.g. --optims adamw,muon)",
            specs.join(" ")
        );
    }
    let mut labels: Vec<&str> = contestants.iter().map(|c| c.label.as_str()).collect();
    labels.sort();
    labels.dedup();
    if labels.len() != contestants.len() {
        bail!("two contestants share a label; give one a distinct @LABEL");
    }
    Ok(contestants)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_forms() {
        let c = parse_spec("muon").unwrap();
        assert_eq!(
            (c.optim.name(), c.label.as_str(), c.sets.len()),
            ("muon", "muon", 0)
        );
        let c = parse_spec("newton-muon@nm3:optim.newton_muon.lr=0.003;train.steps=10").unwrap();
        assert_eq!(c.optim, Method::NewtonMuon);
        assert_eq!(c.label, "nm3");
        assert_eq!(c.sets, vec!["optim.newton_muon.lr=0.003", "train.steps=10"]);
        assert!(parse_spec("muon:lr").is_err());
        assert!(parse_spec("@x").is_err());
    }

    #[test]
    fn the_method_and_seed_are_the_race_s_own() {
        for spec in ["muon:optim.name=adamw", "muon:train.steps=3; seed = 4"] {
            let e = parse_spec(spec).unwrap_err().to_string();
            assert!(e.contains("cannot be overridden in a race"), "{spec}: {e}");
        }
        assert!(check_override("optim.name=\"adamw\"", "--set").is_err());
        assert!(check_override("optim.muon.lr=0.1", "--set").is_ok());
        // `seed` inside a table is another key.
        assert!(check_override("data.seed=1", "--set").is_ok());
    }

    #[test]
    fn an_empty_field_names_no_contestant() {
        for specs in [vec![","], vec![" , ,"], vec![",", ","]] {
            let specs: Vec<String> = specs.into_iter().map(String::from).collect();
            let e = parse_contestants(&specs).unwrap_err().to_string();
            assert!(e.contains("no contestant"), "{specs:?}: {e}");
        }
        let two = parse_contestants(&["adamw,".into(), "muon".into()]).unwrap();
        assert_eq!(two.len(), 2);
        assert!(parse_contestants(&["muon,muon".into()]).is_err());
    }
}
