//! The `speedrun` command line: one subcommand per pipeline stage.
use clap::{Parser, Subcommand};

pub mod bench;

#[derive(Debug, Parser)]
#[command(
    name = "speedrun",
    version,
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
    Data(crate::data::cli::DataArgs),
    /// Train a preset with one optimizer; logs time-to-target, checkpoints, resumes.
    Train(crate::train::cli::TrainArgs),
    /// Write initial weights so that several runs start from the same point (--init-from).
    Init(crate::train::cli::InitArgs),
    /// Run several optimizers × seeds from shared initial weights, then compare them.
    Race(crate::train::race::RaceArgs),
    /// Compare runs: table, plots, statistics over seeds (works on running jobs too).
    Compare(crate::report::cli::CompareArgs),
    /// Time the model and optimizer steps, next to the PyTorch peer.
    Bench(bench::BenchArgs),
}

/// Parse arguments, run, and map errors to a one-line message and exit code 1.
pub fn main() -> i32 {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        // candle's CPU kernels and gemm read RAYON_NUM_THREADS.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    let res = match cli.command {
        Command::Data(a) => crate::data::cli::run(a),
        Command::Train(a) => crate::train::cli::run_train(a),
        Command::Init(a) => crate::train::cli::run_init(a),
        Command::Race(a) => crate::train::race::run(a),
        Command::Compare(a) => crate::report::cli::run(a),
        Command::Bench(a) => bench::run(a),
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", one_line(&format!("{e:#}")));
            1
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
