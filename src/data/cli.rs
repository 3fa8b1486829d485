//! `speedrun data …` subcommands.
use anyhow::Result;
use clap::Args;

#[derive(Debug, Args)]
pub struct DataArgs {}

pub fn run(args: DataArgs) -> Result<()> {
    let _ = args;
    todo!("data issue")
}
