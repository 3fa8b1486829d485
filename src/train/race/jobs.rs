//! `--jobs N` and `--launcher`: the runs of a batch as `speedrun train` processes, N at a time.
//!
//! Each process writes its own run directory, and the race reads the results from there, so a
//! run trains exactly as it would in the race's own process (the CPU kernels give the same bits
//! on any thread count). The processes sit in their own process group: a Ctrl-C, `timeout` or
//! `kill` reaches the race alone, which hands it on to every run once, so each one checkpoints
//! after its step in progress.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::Interrupted;
use crate::train::{run_dir, signals};

/// One run as a process.
pub struct Child {
    pub name: String,
    pub dir: PathBuf,
    /// The command line, program first.
    pub argv: Vec<String>,
}

struct Running {
    name: String,
    dir: PathBuf,
    process: std::process::Child,
    readers: Vec<JoinHandle<()>>,
    /// The last line the process wrote to stderr (its error, if it failed).
    last_err: Arc<Mutex<String>>,
}

/// Print every line of `stream` prefixed with the run's name; keep the last one in `last`.
fn relay(
    stream: impl Read + Send + 'static,
    name: &str,
    to_stderr: bool,
    last: Option<Arc<Mutex<String>>>,
) -> JoinHandle<()> {
    let prefix = format!("[{name}]");
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            // A closed console must not stop the runs: the line is dropped, not unwrapped.
            if to_stderr {
                let _ = writeln_locked(&mut std::io::stderr(), &prefix, &line);
            } else {
                let _ = writeln_locked(&mut std::io::stdout(), &prefix, &line);
            }
            if let Some(l) = &last {
                if !line.trim().is_empty() {
                    *l.lock().unwrap_or_else(|e| e.into_inner()) = line;
                }
            }
        }
    })
}

fn writeln_locked(out: &mut impl std::io::Write, prefix: &str, line: &str) -> std::io::Result<()> {
    writeln!(out, "{prefix} {line}")
}

fn spawn(c: Child) -> Result<Running> {
    say!("== {} -> {} (own process)", c.name, c.dir.display());
    let mut cmd = Command::new(&c.argv[0]);
    cmd.args(&c.argv[1..])
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut process = cmd
        .spawn()
        .with_context(|| format!("race run {}: cannot start `{}`", c.name, c.argv[0]))?;
    let last_err = Arc::new(Mutex::new(String::new()));
    let mut readers = Vec::new();
    if let Some(out) = process.stdout.take() {
        readers.push(relay(out, &c.name, false, None));
    }
    if let Some(err) = process.stderr.take() {
        readers.push(relay(err, &c.name, true, Some(last_err.clone())));
    }
    Ok(Running {
        name: c.name,
        dir: c.dir,
        process,
        readers,
        last_err,
    })
}

/// Send `sig` to every running process, once: a launcher such as mpirun hands it on to its
/// ranks itself (a second copy would read as a second Ctrl-C, which exits without a checkpoint).
fn forward(running: &[Running], sig: i32) {
    for r in running {
        if let Ok(pid) = i32::try_from(r.process.id()) {
            // SAFETY: kill(2) on a child this process started and has not reaped yet.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }
}

/// How a process ended, read from its run directory.
enum End {
    /// Finished or diverged: a result.
    Ended(String),
    /// Stopped by the signal the race handed on: resumable.
    Stopped,
    Failed(String),
}

fn end_of(r: Running, status: ExitStatus, signalled: bool) -> (String, End) {
    for h in r.readers {
        let _ = h.join();
    }
    let end = match run_dir::read_summary(&r.dir) {
        Ok(Some(s)) if s.ended() => End::Ended(match s.diverged_at {
            Some(step) => format!("diverged at step {step}"),
            None => format!(
                "finished, final val loss {}",
                s.final_val_loss
                    .map_or("-".to_string(), |l| format!("{l:.4}"))
            ),
        }),
        _ if signalled => End::Stopped,
        _ => {
            let last = r.last_err.lock().unwrap_or_else(|e| e.into_inner()).clone();
            End::Failed(format!("race run {}: {last} ({status})", r.name))
        }
    };
    (r.name, end)
}

/// Run `children`, `jobs` at a time, until all have ended. A signal is handed on to the running
/// ones and ends the race as [`Interrupted`] once they have checkpointed; a run that fails stops
/// the others the same way and is the error.
pub fn run(children: Vec<Child>, jobs: usize) -> Result<()> {
    let mut queue: VecDeque<Child> = children.into();
    let mut running: Vec<Running> = Vec::new();
    let mut signal: Option<i32> = None;
    let mut failure: Option<String> = None;
    let mut stopped = Vec::new();
    loop {
        if signal.is_none() {
            if let Some(s) = signals::pending() {
                signal = Some(s);
                forward(&running, s);
            }
        }
        while signal.is_none() && failure.is_none() && running.len() < jobs {
            let Some(c) = queue.pop_front() else { break };
            match spawn(c) {
                Ok(r) => running.push(r),
                Err(e) => {
                    failure = Some(format!("{e:#}"));
                    forward(&running, libc::SIGINT);
                }
            }
        }
        if running.is_empty() {
            break;
        }
        let mut i = 0;
        while i < running.len() {
            let Some(status) = running[i].process.try_wait()? else {
                i += 1;
                continue;
            };
            let stopping = signal.is_some() || failure.is_some();
            match end_of(running.remove(i), status, stopping) {
                (name, End::Ended(what)) => say!("== {name}: {what}"),
                (name, End::Stopped) => stopped.push(name),
                (_, End::Failed(why)) => {
                    if failure.is_none() {
                        failure = Some(why);
                        forward(&running, libc::SIGINT);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(f) = failure {
        bail!("{f}");
    }
    match signal {
        Some(signal) => Err(Interrupted {
            signal,
            runs: stopped,
        }
        .into()),
        None => Ok(()),
    }
}
