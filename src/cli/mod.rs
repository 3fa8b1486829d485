//! The `speedrun` command line.
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "speedrun", version, about = "NanoGPT speedrun (GPT-2 124M, record 4) on candle: train, race and compare optimizers")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tokenize, fetch and inspect token shards.
    Data(crate::data::cli::DataArgs),
}

/// Parse arguments, run, and map errors to a one-line message and exit code 1.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Data(a) => crate::data::cli::run(a),
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
