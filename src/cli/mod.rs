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
    /// CPU threads (default: all cores).
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
        // A bad value (an unknown --optim, a --top-p outside (0, 1], say) is bad input like any
        // other: one line, exit 1.
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::InvalidValue | clap::error::ErrorKind::ValueValidation
            ) =>
        {
            let text = e.render().to_string();
            let msg: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with("For more information"))
                .collect();
            eprintln!("{}", crate::one_line(&msg.join(" ")));
            return 1;
        }
        Err(e) => e.exit(),
    };
    if let Some(n) = cli.threads {
        // candle's CPU kernels and gemm read RAYON_NUM_THREADS.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
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
    // With MPI the guard finalises it when dropped, after the report; without, it is empty.
    #[allow(clippy::drop_non_drop)]
    drop(world);
    code
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
            (
                1,
                format!("error: {}", crate::one_line(&format!("{e:#}"))),
                everywhere,
            )
        }
    };
    if dist::size() == 1 || everywhere {
        if dist::is_root() {
            eprintln!("{msg}");
        }
        return code;
    }
    eprintln!("rank {}: {msg}", dist::rank());
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
