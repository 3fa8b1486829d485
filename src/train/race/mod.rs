//! A race: every optimizer on one preset, from shared initial weights, into one directory.
//!
//! With `--tune`, each contestant's grid is run on seed 0 first and grows where its best point
//! lies on an edge ([`tuning`]); then `--seeds` runs at every best point. What runs next is a
//! function of `OUT/race.json` ([`plan::Plan`]) and of the run directories alone, so a rerun
//! skips what has ended and resumes what was interrupted, and `--jobs N` ([`jobs`]) gives the
//! same runs as one process.

/// Print a line of the race's own; a closed stdout (`| head`) must not stop the runs, so a line
/// that cannot be written is dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use say;

pub mod grid;
mod jobs;
pub mod plan;
pub mod spec;
pub mod tuning;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::config;
use super::outcome::Stopped;
use super::trainer::{self, Resume, RunOptions};
use super::write_init_weights;
use crate::device::Exec;
pub use grid::{parse_tunes, TuneArg};
pub use plan::{EntryState, Job, Plan, RACE_FILE};
pub use spec::{parse_contestants, Contestant};

/// A race as the command line gives it.
#[derive(Debug, Clone)]
pub struct Race {
    /// Preset name or TOML file shared by every run.
    pub preset: String,
    /// `--set` overrides for every run (a contestant's own come after them).
    pub sets: Vec<String>,
    pub contestants: Vec<Contestant>,
    /// `--tune` grids (none: each contestant runs as given).
    pub tune: Vec<TuneArg>,
    /// Times a grid may grow at an edge (`--tune-extend`).
    pub extend: usize,
    /// Seeds 0..seeds at each contestant's best point.
    pub seeds: u64,
    /// Where relative data paths start (see [`super::data_root`]).
    pub data_root: Option<PathBuf>,
    pub out: PathBuf,
}

/// How the runs of a race are executed.
#[derive(Debug, Clone)]
pub struct Runner {
    pub exec: Exec,
    pub progress_bar: bool,
    /// Runs side by side, each a single-threaded `speedrun train` process (1: in this process).
    pub jobs: usize,
    /// A command that each run's process is started under (`mpirun -np 2`); implies processes.
    pub launcher: Vec<String>,
    /// The `train` flags that carry this race's device options to a run's process.
    pub device_flags: Vec<String>,
}

/// A race stopped by a signal: the runs in progress were checkpointed; the same command goes on.
#[derive(Debug, Clone, PartialEq)]
pub struct Interrupted {
    pub signal: i32,
    /// The runs that were stopped.
    pub runs: Vec<String>,
}

impl Interrupted {
    pub fn exit_code(&self) -> i32 {
        super::signals::exit_code(self.signal)
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "race interrupted ({}); {} checkpointed, every finished run is kept: run the same race command again to go on",
            super::signals::name(self.signal),
            match self.runs.as_slice() {
                [] => "nothing was running".to_string(),
                runs => runs.join(", "),
            }
        )
    }
}

impl std::error::Error for Interrupted {}

impl Race {
    /// Resolve every contestant's config and grid, checking what can be checked before anything
    /// is written: the overrides, that some contestant has every tuned key, one model for all
    /// (the runs of a seed share its initial weights), the `--seeds`.
    pub fn resolve(&self) -> Result<Plan> {
        if self.seeds == 0 {
            bail!("--seeds 0: a race needs at least one seed");
        }
        for s in &self.sets {
            spec::check_override(s, "--set")?;
        }
        let mut entries = Vec::new();
        for c in &self.contestants {
            let mut sets = self.sets.clone();
            sets.push(format!("optim.name=\"{}\"", c.optim));
            sets.extend(c.sets.iter().cloned());
            let cfg = config::load(&self.preset, &sets)
                .with_context(|| format!("contestant {}", c.label))?;
            let value = toml::Value::try_from(&cfg)?;
            let mut axes = Vec::new();
            for t in &self.tune {
                axes.extend(grid::Axis::resolve(t, &c.label, c.optim, &value)?);
            }
            entries.push(plan::Entry {
                contestant: c.clone(),
                base: cfg.to_toml()?,
                axes,
            });
        }
        for t in &self.tune {
            if !entries
                .iter()
                .any(|e| e.axes.iter().any(|a| a.key == t.key))
            {
                bail!(
                    "--tune {}: no contestant has {} ({})",
                    t.text,
                    t.key,
                    self.contestants
                        .iter()
                        .map(|c| grid::key_path(&t.key, c.optim))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if t.key.starts_with("model.") {
                bail!("--tune {}: the runs of a race share their initial weights, so the model cannot be tuned", t.text);
            }
        }
        let plan = Plan {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            preset: self.preset.clone(),
            sets: self.sets.clone(),
            data_root: self.data_root.clone(),
            tune: self.tune.clone(),
            extend: self.extend,
            seeds: self.seeds,
            entries,
            out: self.out.clone(),
        };
        let model = |e: &plan::Entry| plan.run_config(e, &[], 0).map(|c| c.model);
        let first = model(&plan.entries[0])?;
        for e in &plan.entries[1..] {
            if model(e)? != first {
                bail!(
                    "contestant {}: its model differs from {}'s; the runs of a race share their initial weights, so every contestant must have the same model",
                    e.contestant.label,
                    plan.entries[0].contestant.label
                );
            }
        }
        Ok(plan)
    }

    /// Run the race until every contestant is tuned and every seed has run; returns the plan.
    /// A contestant that diverges is a result and the race goes on; a signal stops the race
    /// ([`Interrupted`]) with the runs in progress checkpointed.
    pub fn run(&self, runner: &Runner) -> Result<Plan> {
        let plan = self.resolve()?;
        // Everything the first runs need is checked before the race directory is created.
        let states = plan.states()?;
        let first = plan.next_batch(&states)?;
        preflight(&first)?;
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("{}: cannot create", self.out.display()))?;
        plan.write()?;
        if !plan.tune.is_empty() {
            announce_tuning(&plan);
        }
        report_ended(&plan, &states);
        let mut announced = vec![false; plan.entries.len()];
        let mut last: Vec<String> = Vec::new();
        loop {
            let states = plan.states()?;
            announce_best(&plan, &states, &mut announced);
            let batch = plan.next_batch(&states)?;
            if batch.is_empty() {
                return Ok(plan);
            }
            let names: Vec<String> = batch.iter().map(|j| j.name.clone()).collect();
            if names == last {
                bail!("the runs {} did not end; see their logs", names.join(", "));
            }
            preflight(&batch)?;
            self.execute(&plan, &batch, runner)?;
            last = names;
        }
    }

    fn execute(&self, plan: &Plan, batch: &[Job], runner: &Runner) -> Result<()> {
        let mut seeds: Vec<u64> = batch.iter().map(|j| j.seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        for &seed in &seeds {
            self.init_for_seed(plan, seed)?;
        }
        if runner.jobs > 1 || !runner.launcher.is_empty() {
            let runs = batch
                .iter()
                .map(|j| jobs::Child {
                    name: j.name.clone(),
                    dir: j.dir.clone(),
                    argv: self.train_argv(plan, j, runner),
                })
                .collect();
            return jobs::run(runs, runner.jobs);
        }
        for j in batch {
            let e = &plan.entries[j.entry];
            let what = plan.describe(e, &j.point, j.seed);
            say!("== {what} -> {}", j.dir.display());
            let opts = RunOptions {
                run_dir: j.dir.clone(),
                exec: runner.exec.clone(),
                resume: Resume::Latest,
                init_from: Some(self.init_path(j.seed)),
                stop_after: None,
                progress_bar: runner.progress_bar,
            };
            if let Err(err) = trainer::train(&j.cfg, &opts) {
                match err.downcast_ref::<Stopped>() {
                    Some(d @ Stopped::Diverged { .. }) => say!("== {what}: {d}"),
                    Some(Stopped::Interrupted { signal, .. } | Stopped::Halted { signal, .. }) => {
                        return Err(Interrupted {
                            signal: *signal,
                            runs: vec![j.name.clone()],
                        }
                        .into())
                    }
                    None => return Err(err.context(format!("race run {}", j.name))),
                }
            }
        }
        Ok(())
    }

    /// The `speedrun train` command line of one run: the preset with the same overrides, in the
    /// race directory, from the seed's shared weights (or resumed from its own checkpoint).
    fn train_argv(&self, plan: &Plan, j: &Job, runner: &Runner) -> Vec<String> {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "speedrun".into());
        let e = &plan.entries[j.entry];
        let mut sets = self.sets.clone();
        sets.push(format!("optim.name=\"{}\"", e.contestant.optim));
        sets.extend(e.contestant.sets.iter().cloned());
        sets.extend(plan.point_sets(e, &j.point, j.seed));
        let mut argv = runner.launcher.clone();
        argv.extend([exe, "--threads".into(), "1".into(), "train".into()]);
        argv.extend(["--config".into(), self.preset.clone()]);
        for s in sets {
            argv.extend(["--set".into(), s]);
        }
        if let Some(d) = &self.data_root {
            argv.extend(["--data-dir".into(), d.display().to_string()]);
        }
        argv.extend(runner.device_flags.iter().cloned());
        let out = self.out.display().to_string();
        argv.extend(["--runs-dir".into(), out, "--name".into(), j.name.clone()]);
        argv.push("--no-progress".into());
        let started = j.dir.join("log.jsonl").exists();
        let ckpts = super::checkpoint::list(&super::checkpoint::checkpoints_dir(&j.dir));
        if started {
            argv.push("--resume".into());
        }
        // A run that has a checkpoint continues from it; any other starts from the seed's weights.
        if !ckpts.is_ok_and(|c| !c.is_empty()) {
            argv.extend([
                "--init-from".into(),
                self.init_path(j.seed).display().to_string(),
            ]);
        }
        argv
    }

    fn init_path(&self, seed: u64) -> PathBuf {
        self.out.join(format!("init_s{seed}.safetensors"))
    }

    /// Shared initial weights for one seed: written once, and checked to fit the race's model
    /// when a rerun finds them.
    fn init_for_seed(&self, plan: &Plan, seed: u64) -> Result<()> {
        let path = self.init_path(seed);
        let cfg = plan.run_config(&plan.entries[0], &[], seed)?;
        if !path.is_file() {
            return write_init_weights(&cfg, &path);
        }
        crate::model::Gpt::from_safetensors(&cfg.model, &path, &candle_core::Device::Cpu)
            .map(drop)
            .with_context(|| {
                format!(
                    "{}: not the initial weights of this race's model; delete it or race into another --out",
                    path.display()
                )
            })
    }
}

/// Every run's config and data, checked before any of them trains.
fn preflight(batch: &[Job]) -> Result<()> {
    for j in batch {
        trainer::preflight(&j.cfg).with_context(|| format!("race run {}", j.name))?;
    }
    Ok(())
}

fn announce_tuning(plan: &Plan) {
    for t in &plan.tune {
        say!("== tuning {} on seed 0", t.text);
    }
    say!(
        "== every grid may grow {} time(s) at an edge; {}",
        plan.extend,
        tuning::RULE
    );
}

/// One line per run that ended before this command started: a rerun trains none of them.
fn report_ended(plan: &Plan, states: &[EntryState]) {
    for (e, s) in plan.entries.iter().zip(states) {
        for t in &s.tuning.tried {
            say!(
                "== {}: ended earlier, skipped",
                plan.describe(e, &t.point, 0)
            );
        }
        if let Some(best) = s.tuning.best_point() {
            for (seed, _) in s.final_runs.iter().filter(|(seed, _)| *seed > 0) {
                say!(
                    "== {}: ended earlier, skipped",
                    plan.describe(e, best, *seed)
                );
            }
        }
    }
}

fn announce_best(plan: &Plan, states: &[EntryState], announced: &mut [bool]) {
    if plan.tune.is_empty() {
        return;
    }
    for ((e, s), done) in plan.entries.iter().zip(states).zip(announced.iter_mut()) {
        if *done || !s.tuning.done() {
            continue;
        }
        let best = s.tuning.best_point().map_or(String::new(), |p| {
            plan.describe(e, p, 0)
                .trim_end_matches(" seed 0")
                .to_string()
        });
        say!("== tuned: {best} ({})", s.tuning.note);
        *done = true;
    }
}

/// Whether `dir` is a race directory (it holds [`RACE_FILE`]).
pub fn is_race_dir(dir: &Path) -> bool {
    dir.join(RACE_FILE).is_file()
}
