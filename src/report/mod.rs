//! Comparing runs: tables, plots, statistics over seeds (`speedrun compare`).

/// Placeholder until the compare issue lands.
pub fn race_report(dirs: &[std::path::PathBuf], plot: &std::path::Path) -> anyhow::Result<()> {
    let _ = (dirs, plot);
    Ok(())
}
