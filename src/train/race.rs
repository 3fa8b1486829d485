//! `speedrun race`: every optimizer × seed on one preset, from shared initial weights, into one
//! directory, then the comparison. Resumable: finished runs are skipped, interrupted ones resume.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::cli::{ConfigArgs, DeviceArgs};
use super::trainer::{self, Resume, RunOptions};

#[derive(Debug, Args)]
pub struct RaceArgs {
    /// Preset name (configs/NAME.toml or built in) or a TOML file, shared by every run.
    #[arg(long, short = 'c', default_value = super::config::DEFAULT_PRESET)]
    pub config: String,
    /// Override a config field for every run (repeatable), e.g. --set train.steps=200.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Contestants: NAME[@LABEL][:KEY=VALUE[;KEY=VALUE…]], e.g. `muon`,
    /// `newton-muon@nm-lr3:optim.newton_muon.lr=0.003`. Repeatable; plain names may be comma-separated.
    #[arg(long = "optims", value_name = "SPEC", required = true)]
    pub specs: Vec<String>,
    /// Seeds 0..N; each seed gets its own shared initial weights.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Output directory holding one run directory per optimizer × seed.
    #[arg(long, default_value = "runs/race")]
    pub out: PathBuf,
    /// Where to write the comparison plot (default OUT/race.svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    #[arg(long)]
    pub no_progress: bool,
}

impl RaceArgs {
    fn config_args(&self, seed: u64) -> ConfigArgs {
        ConfigArgs {
            config: self.config.clone(),
            optim: None,
            seed: Some(seed),
            sets: self.sets.clone(),
        }
    }
}

/// One contestant of a race.
#[derive(Debug, Clone, PartialEq)]
pub struct Contestant {
    pub optim: String,
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
    if optim.is_empty() || label.is_empty() || label.contains('/') {
        bail!("--optims {spec}: expected NAME[@LABEL][:KEY=VALUE;…]");
    }
    let sets: Vec<String> = sets;
    for s in &sets {
        if !s.contains('=') {
            bail!("--optims {spec}: override `{s}` is not KEY=VALUE");
        }
    }
    Ok(Contestant { optim, label, sets })
}

pub fn run(a: RaceArgs) -> Result<()> {
    let mut contestants = Vec::new();
    for s in &a.specs {
        // `--optims adamw,muon` is a shorthand for plain names.
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
    let (device, compute, val_compute) = a.dev.resolve()?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("{}: cannot create", a.out.display()))?;

    let mut dirs = Vec::new();
    for seed in 0..a.seeds {
        let init = init_for_seed(&a, seed)?;
        for c in &contestants {
            let mut cargs = a.config_args(seed);
            cargs.optim = Some(c.optim.clone());
            cargs.sets.extend(c.sets.iter().cloned());
            let cfg = cargs
                .resolve()
                .with_context(|| format!("contestant {}", c.label))?;
            let run_dir = a.out.join(format!("{}-s{seed}", c.label));
            dirs.push(run_dir.clone());
            if trainer::is_finished(&run_dir) {
                println!("== {} seed {seed}: finished earlier, skipped", c.label);
                continue;
            }
            println!("== {} seed {seed} -> {}", c.label, run_dir.display());
            let opts = RunOptions {
                run_dir,
                device: device.clone(),
                compute,
                val_compute,
                resume: Resume::Latest,
                init_from: Some(init.clone()),
                stop_after: None,
                progress_bar: !a.no_progress
                    && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            trainer::train(&cfg, &opts)?;
        }
    }
    let plot = a.plot.clone().unwrap_or_else(|| a.out.join("race.svg"));
    crate::report::race_report(&dirs, &plot)
}

/// Shared initial weights for one seed (written once, reused on a rerun).
fn init_for_seed(a: &RaceArgs, seed: u64) -> Result<PathBuf> {
    let path = a.out.join(format!("init_s{seed}.safetensors"));
    if !path.is_file() {
        super::cli::write_init_weights(&a.config_args(seed).resolve()?, &path)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::parse_spec;

    #[test]
    fn spec_forms() {
        let c = parse_spec("muon").unwrap();
        assert_eq!(
            (c.optim.as_str(), c.label.as_str(), c.sets.len()),
            ("muon", "muon", 0)
        );
        let c = parse_spec("newton-muon@nm3:optim.newton_muon.lr=0.003;train.steps=10").unwrap();
        assert_eq!(c.optim, "newton-muon");
        assert_eq!(c.label, "nm3");
        assert_eq!(c.sets, vec!["optim.newton_muon.lr=0.003", "train.steps=10"]);
        assert!(parse_spec("muon:lr").is_err());
        assert!(parse_spec("@x").is_err());
    }
}
