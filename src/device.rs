//! The execution policy: which device runs, and in which dtypes, decided once from the flags.

use anyhow::{bail, Result};
use candle_core::{DType, Device};

/// Parse `auto|cpu|cuda|cuda:N`. `auto` means CUDA when this binary was built with CUDA and a
/// device answers, CPU otherwise. In a run of several processes, `cuda` (and `auto` on a GPU
/// host) gives each process the GPU of its local rank, as `torchrun` does.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let (local, on_node) = crate::dist::local_rank_size();
    match spec.as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            if candle_core::utils::cuda_is_available() {
                if let Ok(d) = open_gpu("auto", local, on_node) {
                    return Ok(d);
                }
            }
            Ok(Device::Cpu)
        }
        s if s == "cuda" || s.starts_with("cuda:") => {
            if !candle_core::utils::cuda_is_available() {
                bail!("--device {s}: this binary was built without CUDA; rebuild with `cargo build --release --features cuda` (or scripts/build-cuda.sh)");
            }
            match s.strip_prefix("cuda:") {
                None => open_gpu(s, local, on_node),
                Some(_) if crate::dist::size() > 1 => bail!(
                    "--device {s}: a run of {} processes gives each process the GPU of its local rank; use --device cuda",
                    crate::dist::size()
                ),
                Some(n) => {
                    let ordinal: usize = n.parse().map_err(|_| {
                        anyhow::anyhow!("--device {s}: expected cuda:N with N a GPU index")
                    })?;
                    open_gpu(s, ordinal, 1)
                }
            }
        }
        other => bail!("--device {other}: expected auto, cpu, cuda or cuda:N"),
    }
}

/// GPU `ordinal`, for one of `on_node` processes on this host: more processes than GPUs is an
/// error that names both counts.
fn open_gpu(spec: &str, ordinal: usize, on_node: usize) -> Result<Device> {
    #[cfg(feature = "cuda")]
    {
        use candle_core::cuda_backend::cudarc::driver::CudaContext;
        let count = CudaContext::device_count().unwrap_or(0).max(0) as usize;
        if on_node > count {
            bail!("--device {spec}: {on_node} processes on this host but {count} GPUs: start at most {count} per host");
        }
    }
    let _ = on_node;
    Device::new_cuda(ordinal)
        .map_err(|e| anyhow::anyhow!("--device {spec}: cannot open GPU {ordinal}: {e}"))
}

/// Human-readable device name for logs and run metadata.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", rayon_threads()),
        Device::Cuda(_) => "cuda".to_string(),
        Device::Metal(_) => "metal".to_string(),
    }
}

/// The threads candle's CPU kernels run on (its gemm and ops use the global rayon pool, which
/// `--threads` sizes).
fn rayon_threads() -> usize {
    rayon::current_num_threads()
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

/// Where and in which dtypes a run computes. Master weights and optimizer state are fp32 always
/// (record 4); these are the dtypes of the work in between.
#[derive(Debug, Clone)]
pub struct Exec {
    pub device: Device,
    /// Forward/backward dtype: bf16 on CUDA unless told otherwise (record 4 runs the model under
    /// bf16 autocast), fp32 on CPU (bf16 matmuls there are emulated and slower).
    pub compute: DType,
    /// Validation dtype (record 4 validates in fp32).
    pub val_compute: DType,
    /// Newton–Schulz dtype: bf16 on CUDA as in record 4's `zeropower_via_newtonschulz5`, fp32 on
    /// CPU where bf16 gains nothing.
    pub ns_dtype: DType,
}

impl Exec {
    /// Resolve `--device`, `--precision` (None: the device's default) and `--val-bf16`.
    pub fn resolve(device: &str, precision: Option<&str>, val_bf16: bool) -> Result<Exec> {
        let device = parse_device(device)?;
        crate::dist::attach(&device)?;
        let compute = match precision {
            Some(p) => parse_precision(p)?,
            None => Exec::default_compute(&device),
        };
        Ok(Exec::new(device, compute, val_bf16))
    }

    /// The policy for `device` at `compute`, with the device's Newton–Schulz dtype.
    pub fn new(device: Device, compute: DType, val_bf16: bool) -> Exec {
        let ns_dtype = if device.is_cuda() {
            DType::BF16
        } else {
            DType::F32
        };
        let val_compute = if val_bf16 { DType::BF16 } else { DType::F32 };
        Exec {
            device,
            compute,
            val_compute,
            ns_dtype,
        }
    }

    /// fp32 on the CPU for everything (tests, init weights).
    pub fn cpu() -> Exec {
        Exec::new(Device::Cpu, DType::F32, false)
    }

    fn default_compute(device: &Device) -> DType {
        if device.is_cuda() {
            DType::BF16
        } else {
            DType::F32
        }
    }

    /// `fp32` or `bf16`, as `meta.json` and the bench print it.
    pub fn precision(&self) -> &'static str {
        if self.compute == DType::BF16 {
            "bf16"
        } else {
            "fp32"
        }
    }
}
