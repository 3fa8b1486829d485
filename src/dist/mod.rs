//! The processes of a data-parallel run. Under `mpirun -np N` (a binary built with the `mpi`
//! feature) every process learns its rank and the world size from MPI; otherwise the world is one
//! process and every collective below is the identity. Record 4 is an 8-GPU run; `train.ranks`
//! keeps its data order at any world size (docs/distributed.md).
//!
//! All MPI calls are made from the main thread (the trainer's), so the communicator lives in a
//! thread-local; `init` must be called there before anything else, and its guard kept until exit
//! (dropping it finalises MPI).

use anyhow::Result;
use candle_core::{DType, Tensor};

/// Keeps MPI initialised; dropping it finalises.
pub struct Guard {
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

#[cfg(feature = "mpi")]
mod world;
#[cfg(feature = "mpi")]
use self::world as imp;
#[cfg(feature = "nccl")]
mod nccl;
mod share;

pub use share::{owners, run_shared, Job};

#[cfg(not(feature = "mpi"))]
mod imp {
    pub fn rank_size() -> (usize, usize) {
        (0, 1)
    }
    pub fn local_rank_size() -> (usize, usize) {
        (0, 1)
    }
    pub fn sum_f32(_: &mut [f32]) {}
    pub fn sum_f64(_: &mut [f64]) {}
    pub fn min_max_u64(x: u64) -> (u64, u64) {
        (x, x)
    }
    pub fn abort(code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Join the MPI world when launched by `mpirun` (and built with `mpi`); a single process else.
pub fn init() -> Guard {
    Guard {
        #[cfg(feature = "mpi")]
        _universe: imp::init(),
    }
}

/// This process's rank (0 alone).
pub fn rank() -> usize {
    imp::rank_size().0
}

/// The number of processes.
pub fn size() -> usize {
    imp::rank_size().1
}

/// This process's rank among the processes of its node, and their number: a multi-GPU run
/// gives each process GPU `local rank`.
pub fn local_rank_size() -> (usize, usize) {
    imp::local_rank_size()
}

/// Join the world's GPU communicator (NCCL, in a binary built with `nccl`) on this process's
/// `device`; without it, CUDA tensors are summed through host memory over MPI.
pub fn attach(device: &candle_core::Device) -> Result<()> {
    #[cfg(feature = "nccl")]
    nccl::init(device)?;
    let _ = device;
    Ok(())
}

/// Rank 0: the one process that writes the run directory and prints.
pub fn is_root() -> bool {
    rank() == 0
}

thread_local! {
    /// Seconds spent in the collectives since the last `take_comm_ms`.
    static COMM_SECS: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

fn timed<R>(f: impl FnOnce() -> R) -> R {
    let t0 = std::time::Instant::now();
    let r = f();
    COMM_SECS.with(|c| c.set(c.get() + t0.elapsed().as_secs_f64()));
    r
}

/// Milliseconds spent in all-reduces and all-gathers since the last call (the trainer logs
/// each step's as `comm_ms`).
pub fn take_comm_ms() -> f64 {
    COMM_SECS.with(|c| c.replace(0.0)) * 1e3
}

/// Element-wise sum over all processes, in place.
pub fn sum_f32(buf: &mut [f32]) {
    timed(|| imp::sum_f32(buf))
}

/// Element-wise sum over all processes, in place.
pub fn sum_f64(buf: &mut [f64]) {
    timed(|| imp::sum_f64(buf))
}

/// Element-wise sum of `tensors` over all processes, in place, in one all-reduce of one flat
/// fp32 buffer (a few large calls rather than one per tensor): over NCCL on the GPUs where the
/// world has a communicator, through host memory over MPI otherwise. Each tensor keeps its
/// shape, device and dtype.
pub fn sum_tensors(tensors: &mut [&mut Tensor]) -> Result<()> {
    if size() == 1 || tensors.is_empty() {
        return Ok(());
    }
    let parts = tensors
        .iter()
        .map(|t| t.to_dtype(DType::F32)?.flatten_all())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let flat = Tensor::cat(&parts, 0)?;
    let summed = sum_flat(flat)?;
    let mut at = 0;
    for t in tensors.iter_mut() {
        let n = t.elem_count();
        let part = summed.narrow(0, at, n)?.reshape(t.shape())?;
        **t = part.to_dtype(t.dtype())?;
        at += n;
    }
    Ok(())
}

/// The all-reduce (sum) of one flat fp32 tensor.
fn sum_flat(flat: Tensor) -> Result<Tensor> {
    #[cfg(feature = "nccl")]
    if flat.device().is_cuda() && nccl::ready() {
        // Synchronised on both sides, so `comm_ms` times the transfer, not the kernels queued
        // before it.
        flat.device().synchronize()?;
        return timed(|| {
            let summed = nccl::sum(&flat)?;
            flat.device().synchronize()?;
            Ok(summed)
        });
    }
    let mut host = flat.to_vec1::<f32>()?;
    sum_f32(&mut host);
    Ok(Tensor::from_vec(host, flat.dims1()?, flat.device())?)
}

/// The smallest and largest `x` over all processes (equal when every process agrees).
pub fn min_max_u64(x: u64) -> (u64, u64) {
    imp::min_max_u64(x)
}

/// End every process of the world with `code` (a failing rank must not leave the others waiting
/// in a collective).
pub fn abort(code: i32) -> ! {
    imp::abort(code)
}

/// An error that every process of the world meets at the same point (a config that does not fit
/// the world size, say): rank 0 reports it, the others end quietly, and no process needs aborting.
#[derive(Debug)]
pub struct Everywhere(pub String);

impl std::fmt::Display for Everywhere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Everywhere {}

/// The emulated ranks this process trains: `p·k … (p+1)·k − 1` with `k = ranks / world`.
pub fn my_ranks(ranks: usize) -> Result<std::ops::Range<usize>> {
    let (p, world) = imp::rank_size();
    if !ranks.is_multiple_of(world) {
        return Err(Everywhere(format!(
            "train.ranks = {ranks} is not a multiple of the world size {world} (mpirun -np): use a world size that divides it"
        ))
        .into());
    }
    let k = ranks / world;
    Ok(p * k..(p + 1) * k)
}
