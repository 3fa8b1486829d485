//! Initial weights written to a file, so that several runs (a race's contestants) start from the
//! same point.

use std::path::Path;

use anyhow::Result;

use super::Config;
use crate::model::Gpt;

/// Fresh weights for `cfg.seed` (drawn on the host, so identical for every device), written
/// atomically to `out` (temporary file, then rename), creating its directory.
pub fn write_init_weights(cfg: &Config, out: &Path) -> Result<()> {
    let model = Gpt::new(&cfg.model, &candle_core::Device::Cpu, cfg.seed)?;
    crate::fsutil::create_parent(out)?;
    crate::fsutil::write_atomic_with(out, |tmp| model.save_safetensors(tmp))?;
    Ok(())
}
