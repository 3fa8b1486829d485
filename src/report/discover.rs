//! Finding runs: the arguments of `speedrun compare` may name run directories, modded-nanogpt
//! text logs, globs of them (expanded here when the shell did not) or directories of runs.
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A run directory is one the trainer wrote into.
pub fn is_run_dir(p: &Path) -> bool {
    p.is_dir()
        && ["log.jsonl", "summary.json", "config.toml", "meta.json"]
            .iter()
            .any(|f| p.join(f).is_file())
}

/// A `.txt` or `.log` file holding a modded-nanogpt log: how a text log is recognised among
/// other files (a glob hit, a directory entry). A file named on its own is always read as one.
pub fn is_text_log_file(p: &Path) -> bool {
    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
    p.is_file()
        && matches!(ext, "txt" | "log")
        && super::record::read_log(p).is_ok_and(|t| super::textlog::is_text_log(&t))
}

fn is_run(p: &Path) -> bool {
    is_run_dir(p) || is_text_log_file(p)
}

fn expand_dir(p: PathBuf, out: &mut Vec<PathBuf>) -> Result<()> {
    if is_run_dir(&p) || p.is_file() {
        out.push(p);
        return Ok(());
    }
    if !p.is_dir() {
        bail!("{}: no such run directory", p.display());
    }
    let mut subs: Vec<PathBuf> = std::fs::read_dir(&p)
        .with_context(|| format!("{}: cannot list", p.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|s| is_run(s))
        .collect();
    if subs.is_empty() {
        bail!(
            "{}: neither a run directory nor a directory of runs",
            p.display()
        );
    }
    subs.sort();
    out.extend(subs);
    Ok(())
}

/// Expand globs and directories of runs into runs (directories and text logs), keeping argument
/// order and dropping duplicates.
pub fn expand_run_dirs(args: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        if a.contains(['*', '?', '[']) {
            let mut hits: Vec<PathBuf> = glob::glob(a)
                .with_context(|| format!("{a}: bad glob pattern"))?
                .filter_map(|r| r.ok())
                .filter(|p| p.is_dir() || is_text_log_file(p))
                .collect();
            if hits.is_empty() {
                bail!("{a}: glob matched no run directory or log");
            }
            hits.sort();
            for h in hits {
                expand_dir(h, &mut out)?;
            }
        } else {
            expand_dir(PathBuf::from(a), &mut out)?;
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.canonicalize().unwrap_or_else(|_| p.clone())));
    Ok(out)
}
