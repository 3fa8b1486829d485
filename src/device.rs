//! Device and precision selection shared by every subcommand.

use anyhow::{bail, Result};
use candle_core::{DType, Device};

/// Parse `auto|cpu|cuda|cuda:N`. `auto` means CUDA when this binary was built with CUDA and a
/// device answers, CPU otherwise.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    match spec.as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            if candle_core::utils::cuda_is_available() {
                if let Ok(d) = Device::new_cuda(0) {
                    return Ok(d);
                }
            }
            Ok(Device::Cpu)
        }
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal: usize = match s.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--device {s}: expected cuda:N with N a GPU index"))?,
            };
            if !candle_core::utils::cuda_is_available() {
                bail!("--device {s}: this binary was built without CUDA; rebuild with `cargo build --release --features cuda` (or scripts/build-cuda.sh)");
            }
            Device::new_cuda(ordinal).map_err(|e| anyhow::anyhow!("--device {s}: cannot open GPU {ordinal}: {e}"))
        }
        other => bail!("--device {other}: expected auto, cpu, cuda or cuda:N"),
    }
}

/// Human-readable device name for logs and run metadata.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", rayon_threads()),
        Device::Cuda(_) => "cuda".to_string(),
        Device::Metal(_) => "metal".to_string(),
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// `--precision fp32|bf16`: the dtype of the forward/backward compute. Master weights and
/// optimizer state are always fp32 (record 4).
pub fn parse_precision(spec: &str) -> Result<DType> {
    match spec.trim().to_ascii_lowercase().as_str() {
        "fp32" | "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        other => bail!("--precision {other}: expected fp32 or bf16"),
    }
}
