//! `speedrun export tensorboard RUN… --out DIR`: the runs' scalars as TensorBoard event files.
use crate::report::{expand_run_dirs, load_runs, tensorboard};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub what: ExportCommand,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Event files for TensorBoard (`tensorboard --logdir DIR`): train and val loss, the lr of
    /// each group, tokens, times and the optimizer diagnostics, against the step.
    Tensorboard(TensorboardArgs),
}

#[derive(Debug, Args)]
pub struct TensorboardArgs {
    /// Run directories, modded-nanogpt text logs, globs or directories of runs.
    #[arg(required = true)]
    pub runs: Vec<String>,
    /// Log directory: one subdirectory per run.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: ExportArgs) -> Result<()> {
    match args.what {
        ExportCommand::Tensorboard(a) => {
            let runs = load_runs(&expand_run_dirs(&a.runs)?)?;
            for f in tensorboard::export(&runs, &a.out)? {
                println!("wrote {}", f.display());
            }
            println!("open with: tensorboard --logdir {}", a.out.display());
            Ok(())
        }
    }
}
