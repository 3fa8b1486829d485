//! A race as resolved once and written to `OUT/race.json`: every contestant's config before
//! tuning and its grid. What to run next, and every run's config, follow from it and from the run
//! directories alone, so a rerun, `--jobs` and the report all see the same race.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::grid::{fmt_value, Axis, TuneArg};
use super::spec::Contestant;
use super::tuning::{tune, Outcome, Point, Tuning};
use crate::train::config::{self, Config};
use crate::train::run_dir;

/// The file a race directory is known by.
pub const RACE_FILE: &str = "race.json";

/// One contestant with its config before tuning and its axes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub contestant: Contestant,
    /// The resolved config (TOML) of its seed-0 run before tuning: preset, `--set`, method and
    /// the contestant's own overrides.
    pub base: String,
    /// The tuned keys that apply to its method (none without `--tune`).
    pub axes: Vec<Axis>,
}

/// The resolved race.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The command line that made it.
    pub command: String,
    pub preset: String,
    pub sets: Vec<String>,
    pub data_root: Option<PathBuf>,
    pub tune: Vec<TuneArg>,
    /// Times a grid may grow (`--tune-extend`).
    pub extend: usize,
    /// Seeds 0..seeds at each contestant's best point.
    pub seeds: u64,
    pub entries: Vec<Entry>,
    /// The race directory (where `race.json` was read from or goes).
    #[serde(skip)]
    pub out: PathBuf,
}

/// One run of a race.
#[derive(Debug, Clone)]
pub struct Job {
    pub entry: usize,
    pub point: Point,
    pub seed: u64,
    pub name: String,
    pub dir: PathBuf,
    pub cfg: Config,
}

/// The state of one contestant: its tuning, then its runs at the best point.
#[derive(Debug, Clone)]
pub struct EntryState {
    pub tuning: Tuning,
    /// The seeds (of 0..seeds) whose runs at the best point have ended, with their directories.
    pub final_runs: Vec<(u64, PathBuf)>,
}

impl Plan {
    /// Read `out/race.json`.
    pub fn read(out: &Path) -> Result<Plan> {
        let path = out.join(RACE_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: cannot read (not a directory written by speedrun race?)",
                path.display()
            )
        })?;
        let mut plan: Plan = serde_json::from_str(&text)
            .with_context(|| format!("{}: malformed race file", path.display()))?;
        plan.out = out.to_path_buf();
        Ok(plan)
    }

    /// Write `out/race.json` (atomically).
    pub fn write(&self) -> Result<()> {
        crate::fsutil::write_json(&self.out.join(RACE_FILE), self)
    }

    /// A run's directory name: `LABEL[-KEYVALUE…]-sSEED` (`muon-lr0.003-s1`).
    pub fn run_name(&self, e: &Entry, point: &[f64], seed: u64) -> String {
        let mut name = e.contestant.label.clone();
        for (a, v) in e.axes.iter().zip(point) {
            name.push_str(&format!("-{}{}", a.key, fmt_value(*v, a.integer)));
        }
        format!("{name}-s{seed}")
    }

    /// How a run is named in the race's messages: `muon lr=0.003 seed 1`.
    pub fn describe(&self, e: &Entry, point: &[f64], seed: u64) -> String {
        let mut s = e.contestant.label.clone();
        for (a, v) in e.axes.iter().zip(point) {
            s.push_str(&format!(" {}={}", a.key, fmt_value(*v, a.integer)));
        }
        format!("{s} seed {seed}")
    }

    /// The overrides of a run beyond its contestant's base: the seed, then the tuned values.
    pub fn point_sets(&self, e: &Entry, point: &[f64], seed: u64) -> Vec<String> {
        let mut sets = vec![format!("seed={seed}")];
        sets.extend(e.axes.iter().zip(point).map(|(a, v)| a.set(*v)));
        sets
    }

    /// The config of a run: the contestant's base with the seed and the point's values.
    pub fn run_config(&self, e: &Entry, point: &[f64], seed: u64) -> Result<Config> {
        let label = &e.contestant.label;
        let mut value: toml::Value = toml::from_str(&e.base)
            .with_context(|| format!("{RACE_FILE}: contestant {label}: malformed base config"))?;
        for s in self.point_sets(e, point, seed) {
            config::apply_set(&mut value, &s)?;
        }
        let mut cfg: Config = value.try_into().map_err(|e: toml::de::Error| {
            anyhow!("contestant {label}: {}", crate::one_line(&e.to_string()))
        })?;
        cfg.validate()
            .with_context(|| format!("contestant {label}"))?;
        cfg.data_root = self.data_root.clone();
        Ok(cfg)
    }

    /// What the run of `point` at `seed` came to: `None` while it has not ended. A directory that
    /// holds a run of another config is an error, never a result of this race.
    pub fn outcome(&self, e: &Entry, point: &[f64], seed: u64) -> Result<Option<Outcome>> {
        let dir = self.out.join(self.run_name(e, point, seed));
        let saved = dir.join("config.toml");
        if !saved.is_file() {
            return Ok(None);
        }
        let theirs = config::from_toml_file(&saved)?;
        let ours = self.run_config(e, point, seed)?;
        let differ = ours.differing_fields(&theirs);
        if !differ.is_empty() {
            bail!(
                "{}: holds a run with another config (differs in {}); race into another --out, or delete that directory to run it again",
                dir.display(),
                differ.join(", ")
            );
        }
        Ok(run_dir::read_summary(&dir)?.as_ref().and_then(Outcome::of))
    }

    /// The tuning of entry `e` as far as its runs have gone.
    pub fn tuning(&self, e: &Entry) -> Result<Tuning> {
        tune(
            &e.axes,
            self.extend,
            |p| self.outcome(e, p, 0),
            |p| {
                self.run_config(e, p, 0)
                    .map(drop)
                    .map_err(|err| crate::one_line(&format!("{err:#}")))
            },
        )
    }

    /// Every contestant's state.
    pub fn states(&self) -> Result<Vec<EntryState>> {
        self.entries
            .iter()
            .map(|e| {
                let tuning = self.tuning(e)?;
                let mut final_runs = Vec::new();
                if let Some(best) = tuning.best_point().filter(|_| tuning.done()) {
                    for seed in 0..self.seeds {
                        if self.outcome(e, best, seed)?.is_some() {
                            final_runs.push((seed, self.out.join(self.run_name(e, best, seed))));
                        }
                    }
                }
                Ok(EntryState { tuning, final_runs })
            })
            .collect()
    }

    fn job(&self, entry: usize, point: &[f64], seed: u64) -> Result<Job> {
        let e = &self.entries[entry];
        let name = self.run_name(e, point, seed);
        check_run_name(&name)?;
        Ok(Job {
            entry,
            point: point.to_vec(),
            seed,
            dir: self.out.join(&name),
            name,
            cfg: self.run_config(e, point, seed)?,
        })
    }

    /// The runs to do next: every pending grid point (seed 0), then the seeds of every contestant
    /// whose tuning is done (seed-major). Empty once the race is over.
    pub fn next_batch(&self, states: &[EntryState]) -> Result<Vec<Job>> {
        let mut jobs = Vec::new();
        for (i, s) in states.iter().enumerate() {
            for p in &s.tuning.pending {
                jobs.push(self.job(i, p, 0)?);
            }
        }
        for seed in 1..self.seeds {
            for (i, s) in states.iter().enumerate() {
                let Some(best) = s.tuning.best_point().filter(|_| s.tuning.done()) else {
                    continue;
                };
                if self.outcome(&self.entries[i], best, seed)?.is_none() {
                    jobs.push(self.job(i, best, seed)?);
                }
            }
        }
        Ok(jobs)
    }
}

/// A run name must be a plain directory name that the file system takes (255 bytes on Linux,
/// macOS and Windows), checked before anything is written.
fn check_run_name(name: &str) -> Result<()> {
    run_dir::check_name(name)?;
    if name.len() > 255 {
        bail!(
            "run name {}… is {} bytes long, more than a file name may be (255); shorten the @LABEL or the --tune key",
            name.chars().take(40).collect::<String>(),
            name.len()
        );
    }
    Ok(())
}
