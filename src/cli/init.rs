//! `speedrun init`: initial weights that several runs can start from (`--init-from`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::train::ConfigArgs;
use crate::train::write_init_weights;

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub cfg: ConfigArgs,
    /// Where to write the initial weights (safetensors, PyTorch names).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run_init(a: InitArgs) -> Result<()> {
    let cfg = a.cfg.resolve()?;
    write_init_weights(&cfg, &a.out)?;
    println!(
        "wrote {} ({} parameters, seed {}, model {}x{}x{})",
        a.out.display(),
        cfg.model.num_params(),
        cfg.seed,
        cfg.model.n_layer,
        cfg.model.n_head,
        cfg.model.n_embd
    );
    Ok(())
}
