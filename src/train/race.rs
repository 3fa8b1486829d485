//! A race: every optimizer × seed on one preset, from shared initial weights, into one directory.
//! Resumable: finished runs are skipped, interrupted ones resume.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::config::{self, Config};
use super::outcome::Stopped;
use super::trainer::{self, Resume, RunOptions};
use super::write_init_weights;
use crate::device::Exec;

/// One contestant of a race.
#[derive(Debug, Clone, PartialEq)]
pub struct Contestant {
    pub optim: crate::optim::Method,
    pub label: String,
    pub sets: Vec<String>,
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
    super::run_dir::check_name(&label).with_context(|| format!("--optims {spec}: label"))?;
    let optim = optim.parse().with_context(|| format!("--optims {spec}"))?;
    for s in &sets {
        if !s.contains('=') {
            bail!("--optims {spec}: override `{s}` is not KEY=VALUE");
        }
    }
    Ok(Contestant { optim, label, sets })
}

/// Parse `--optims` values: specs, where plain names may be comma-separated (`adamw,muon`).
/// Labels must be distinct.
pub fn parse_contestants(specs: &[String]) -> Result<Vec<Contestant>> {
    let mut contestants = Vec::new();
    for s in specs {
        if !s.contains(':') && s.contains(',') {
            for n in s.split(',').filter(|n| !n.is_empty()) {
                contestants.push(parse_spec(n)?);
            }
        } else {
            contestants.push(parse_spec(s)?);
        }
    }
    let mut labels: Vec<&str> = contestants.iter().map(|c| c.label.as_str()).collect();
    labels.sort();
    labels.dedup();
    if labels.len() != contestants.len() {
        bail!("two contestants share a label; give one a distinct @LABEL");
    }
    Ok(contestants)
}

/// A race: every contestant × seed on one preset, into `out/<label>-s<seed>`.
#[derive(Debug, Clone)]
pub struct Race {
    /// Preset name or TOML file shared by every run.
    pub preset: String,
    /// `--set` overrides for every run (a contestant's own come after them).
    pub sets: Vec<String>,
    pub contestants: Vec<Contestant>,
    /// Seeds 0..seeds.
    pub seeds: u64,
    /// Where relative data paths start (see [`super::data_root`]).
    pub data_root: Option<PathBuf>,
    pub out: PathBuf,
}

impl Race {
    /// The config of one run: preset, race overrides, then the contestant's method and overrides.
    /// `None` is the shared config of a seed (for its initial weights).
    fn config(&self, c: Option<&Contestant>, seed: u64) -> Result<Config> {
        let mut sets = vec![format!("seed={seed}")];
        sets.extend(self.sets.iter().cloned());
        if let Some(c) = c {
            sets.push(format!("optim.name=\"{}\"", c.optim));
            sets.extend(c.sets.iter().cloned());
        }
        let mut cfg = config::load(&self.preset, &sets)?;
        cfg.data_root = self.data_root.clone();
        Ok(cfg)
    }

    /// Every run's config, seed-major, each checked with its data before any training starts.
    fn plan(&self) -> Result<Vec<(u64, &Contestant, Config)>> {
        if self.seeds == 0 {
            bail!("--seeds 0: a race needs at least one seed");
        }
        let mut plan = Vec::new();
        for seed in 0..self.seeds {
            for c in &self.contestants {
                let cfg = self
                    .config(Some(c), seed)
                    .and_then(|cfg| trainer::preflight(&cfg).map(|()| cfg))
                    .with_context(|| format!("contestant {}", c.label))?;
                plan.push((seed, c, cfg));
            }
        }
        Ok(plan)
    }

    /// Train every run not ended yet (interrupted ones resume) and return every run directory,
    /// in seed-major order. A contestant that diverges is recorded as such and the race goes on;
    /// an interrupt stops the race.
    pub fn run(&self, exec: &Exec, progress_bar: bool) -> Result<Vec<PathBuf>> {
        let plan = self.plan()?;
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("{}: cannot create", self.out.display()))?;
        let mut dirs = Vec::new();
        for (seed, c, cfg) in plan {
            let run_dir = self.out.join(format!("{}-s{seed}", c.label));
            dirs.push(run_dir.clone());
            if trainer::has_ended(&run_dir) {
                println!("== {} seed {seed}: ended earlier, skipped", c.label);
                continue;
            }
            println!("== {} seed {seed} -> {}", c.label, run_dir.display());
            let opts = RunOptions {
                run_dir,
                exec: exec.clone(),
                resume: Resume::Latest,
                init_from: Some(self.init_for_seed(seed)?),
                stop_after: None,
                progress_bar,
            };
            match trainer::train(&cfg, &opts) {
                Ok(_) => {}
                Err(e) => match e.downcast_ref::<Stopped>() {
                    Some(d @ Stopped::Diverged { .. }) => {
                        println!("== {} seed {seed}: {d}", c.label)
                    }
                    _ => return Err(e),
                },
            }
        }
        Ok(dirs)
    }

    /// Shared initial weights for one seed (written once, reused on a rerun).
    fn init_for_seed(&self, seed: u64) -> Result<PathBuf> {
        let path = self.out.join(format!("init_s{seed}.safetensors"));
        if !path.is_file() {
            write_init_weights(&self.config(None, seed)?, &path)?;
        }
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_spec;

    #[test]
    fn spec_forms() {
        let c = parse_spec("muon").unwrap();
        assert_eq!(
            (c.optim.name(), c.label.as_str(), c.sets.len()),
            ("muon", "muon", 0)
        );
        let c = parse_spec("newton-muon@nm3:optim.newton_muon.lr=0.003;train.steps=10").unwrap();
        assert_eq!(c.optim, crate::optim::Method::NewtonMuon);
        assert_eq!(c.label, "nm3");
        assert_eq!(c.sets, vec!["optim.newton_muon.lr=0.003", "train.steps=10"]);
        assert!(parse_spec("muon:lr").is_err());
        assert!(parse_spec("@x").is_err());
    }
}
