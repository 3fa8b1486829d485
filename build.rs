// Embeds the git commit so every run directory records which code produced it.
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SPEEDRUN_GIT_COMMIT={commit}");
    // `speedrun --version` names the optional back ends built in (cuda, mpi, nccl).
    let features: Vec<&str> = ["cuda", "mpi", "nccl"]
        .into_iter()
        .filter(|f| std::env::var_os(format!("CARGO_FEATURE_{}", f.to_uppercase())).is_some())
        .collect();
    let features = if features.is_empty() {
        "cpu".to_string()
    } else {
        features.join(",")
    };
    println!(
        "cargo:rustc-env=SPEEDRUN_LONG_VERSION={} ({commit}; {features})",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default()
    );
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
