//! The `speedrun` command line: one subcommand per pipeline stage.
use clap::{Parser, Subcommand};

pub mod bench;
mod bench_sample;
pub mod compare;
pub mod data;
pub mod eval;
pub mod export;
pub mod init;
pub mod race;
pub mod sample;
pub mod train;

#[derive(Debug, Parser)]
#[command(
    name = "speedrun",
    version = env!("SPEEDRUN_LONG_VERSION"),
    about = "NanoGPT speedrun (GPT-2 124M, record 4) on candle: train, race and compare optimizers"
)]
pub struct Cli {
    /// CPU threads (default: all cores; at most 8 per core).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tokenize, fetch and inspect token shards.
    Data(data::DataArgs),
    /// Train a preset with one optimizer; logs time-to-target, checkpoints, resumes.
    Train(train::TrainArgs),
    /// Write initial weights so that several runs start from the same point (--init-from).
    Init(init::InitArgs),
    /// Race optimizers from shared initial weights: tune each one's lr (or any key) on the same
    /// budget, run seeds at the best points, then report with a verdict per pair.
    Race(race::RaceArgs),
    /// Write text with a trained model (a run, a checkpoint or a weights file), streamed, with
    /// a KV cache.
    Sample(sample::SampleArgs),
    /// Loss and perplexity of checkpoints on token shards (a run's own val shards by default).
    Eval(eval::EvalArgs),
    /// Compare runs: table, plots, an interactive HTML page, statistics over seeds (works on
    /// running jobs too, and on modded-nanogpt's own logs).
    Compare(compare::CompareArgs),
    /// Export runs to other tools (TensorBoard event files).
    Export(export::ExportArgs),
    /// Time the model and optimizer steps, next to the PyTorch peer.
    Bench(bench::BenchArgs),
}

/// Parse arguments, run, and map errors to a one-line message and exit code 1.
pub fn main() -> i32 {
    let world = crate::train::dist::init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A bad value (an unknown --optim, an out-of-range --seed) or two flags that exclude
        // each other: one line, exit 1.
        Err(e) if one_line_kind(e.kind()) => {
            let text = e.render().to_string();
            let msg: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with("For more information") && !l.starts_with("Usage:"))
                .collect();
            crate::out::err_line(&crate::one_line(&msg.join(" ")));
            return 1;
        }
        Err(e) => e.exit(),
    };
    if !matches!(cli.command, Command::Train(_) | Command::Race(_)) {
        crate::out::default_sigpipe();
    }
    if let Err(e) = set_threads(cli.threads) {
        return report(Err(e));
    }
    let res = match cli.command {
        Command::Data(a) => data::run(a),
        Command::Train(a) => train::run_train(a),
        Command::Init(a) => init::run_init(a),
        Command::Race(a) => race::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Export(a) => export::run(a),
        Command::Bench(a) => bench::run(a),
    };
    let code = report(res);
    // Finalizes MPI in a `--features mpi` build (where the guard has a Drop) before exit, which
    // runs no destructors; in other builds the guard is empty.
    #[allow(clippy::drop_non_drop)]
    drop(world);
    code
}

/// The parse errors that are bad input like any other (one line, exit 1) rather than a usage
/// problem (clap's usage text, exit 2).
fn one_line_kind(kind: clap::error::ErrorKind) -> bool {
    use clap::error::ErrorKind as K;
    matches!(
        kind,
        K::InvalidValue | K::ValueValidation | K::ArgumentConflict
    )
}

/// More CPU threads than this many per core only thrash (and rayon cannot start 100,000).
const MAX_THREADS_PER_CORE: usize = 8;

/// Apply `--threads` (checked against the cores) to rayon's pool and to the kernels that read
/// `RAYON_NUM_THREADS`; a `RAYON_NUM_THREADS` given by the user is held to the same bound.
fn set_threads(flag: Option<usize>) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max = MAX_THREADS_PER_CORE * cores;
    let (n, what) = match flag {
        Some(n) => (n, "--threads"),
        None => match std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            // 0 is rayon's own "all cores".
            Some(n) if n > 0 => (n, "RAYON_NUM_THREADS"),
            _ => return Ok(()),
        },
    };
    if n == 0 || n > max {
        anyhow::bail!(
            "{what} {n}: use 1 to {max} ({MAX_THREADS_PER_CORE} per core; this machine has {cores})"
        );
    }
    // candle's CPU kernels and gemm read RAYON_NUM_THREADS.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    Ok(())
}

/// Print how the command ended and return the exit status. In a data-parallel run, rank 0
/// reports what every process meets alike; a failure of one process alone is reported with its
/// rank and ends the whole world, so that no process waits forever in a collective.
fn report(res: anyhow::Result<()>) -> i32 {
    use crate::train::{dist, Stopped};
    let Err(e) = res else { return 0 };
    let ended = match (
        e.downcast_ref::<Stopped>(),
        e.downcast_ref::<crate::train::race::Interrupted>(),
    ) {
        (Some(s), _) => Some((s.exit_code(), s.to_string())),
        (None, Some(r)) => Some((r.exit_code(), r.to_string())),
        (None, None) => None,
    };
    let (code, msg, everywhere) = match ended {
        // An interrupted or diverged run is an outcome, not a failure of the tool: its own
        // message and exit status (130/143 for signals, 3 for divergence).
        Some((code, msg)) => (code, msg, true),
        None => {
            let everywhere = e.downcast_ref::<dist::Everywhere>().is_some();
            // Capped: an error quoting hostile input must still be one readable line.
            let msg = crate::fsutil::shorten(&crate::error_line(&e), 2000);
            (1, format!("error: {msg}"), everywhere)
        }
    };
    if dist::size() == 1 || everywhere {
        if dist::is_root() {
            crate::out::err_line(&msg);
        }
        return code;
    }
    crate::out::err_line(&format!("rank {}: {msg}", dist::rank()));
    dist::abort(code)
}

/// `--optim` and `--methods` take the registry's names; clap lists them in `--help` and rejects
/// any other with that list.
impl clap::ValueEnum for crate::optim::Method {
    fn value_variants<'a>() -> &'a [Self] {
        &crate::optim::Method::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.about()))
    }
}
