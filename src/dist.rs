//! The processes of a data-parallel run. Under `mpirun -np N` (a binary built with the `mpi`
//! feature) every process learns its rank and the world size from MPI; otherwise the world is one
//! process and every collective below is the identity. Record 4 is an 8-GPU run; `train.ranks`
//! keeps its data order at any world size (docs/distributed.md).
//!
//! All MPI calls are made from the main thread (the trainer's), so the communicator lives in a
//! thread-local; `init` must be called there before anything else, and its guard kept until exit
//! (dropping it finalises MPI).

use anyhow::Result;

/// Keeps MPI initialised; dropping it finalises.
pub struct Guard {
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

#[cfg(feature = "mpi")]
mod imp {
    use std::cell::RefCell;

    use mpi::collective::SystemOperation;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;

    thread_local! {
        pub static COMM: RefCell<Option<SimpleCommunicator>> = const { RefCell::new(None) };
    }

    /// Started by an MPI launcher? (OpenMPI's and the PMI variables; a plain start stays MPI-free.)
    pub fn launched() -> bool {
        ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
            .iter()
            .any(|v| std::env::var_os(v).is_some())
    }

    pub fn init() -> Option<mpi::environment::Universe> {
        if !launched() {
            return None;
        }
        let universe = mpi::initialize()?;
        COMM.with(|c| *c.borrow_mut() = Some(universe.world()));
        Some(universe)
    }

    pub fn rank_size() -> (usize, usize) {
        COMM.with(|c| match c.borrow().as_ref() {
            Some(w) => (w.rank() as usize, w.size() as usize),
            None => (0, 1),
        })
    }

    pub fn sum_f32(buf: &mut [f32]) {
        COMM.with(|c| {
            if let Some(w) = c.borrow().as_ref() {
                let send = buf.to_vec();
                w.all_reduce_into(&send[..], buf, SystemOperation::sum());
            }
        })
    }

    pub fn sum_f64(buf: &mut [f64]) {
        COMM.with(|c| {
            if let Some(w) = c.borrow().as_ref() {
                let send = buf.to_vec();
                w.all_reduce_into(&send[..], buf, SystemOperation::sum());
            }
        })
    }

    pub fn min_max_u64(x: u64) -> (u64, u64) {
        COMM.with(|c| match c.borrow().as_ref() {
            Some(w) => {
                let (mut lo, mut hi) = (0u64, 0u64);
                w.all_reduce_into(&x, &mut lo, SystemOperation::min());
                w.all_reduce_into(&x, &mut hi, SystemOperation::max());
                (lo, hi)
            }
            None => (x, x),
        })
    }

    pub fn abort(code: i32) -> ! {
        COMM.with(|c| match c.borrow().as_ref() {
            Some(w) => w.abort(code),
            None => std::process::exit(code),
        })
    }
}

#[cfg(not(feature = "mpi"))]
mod imp {
    pub fn rank_size() -> (usize, usize) {
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

/// Rank 0: the one process that writes the run directory and prints.
pub fn is_root() -> bool {
    rank() == 0
}

/// Element-wise sum over all processes, in place.
pub fn sum_f32(buf: &mut [f32]) {
    imp::sum_f32(buf)
}

/// Element-wise sum over all processes, in place.
pub fn sum_f64(buf: &mut [f64]) {
    imp::sum_f64(buf)
}

/// Element-wise sum of `tensors` over all processes, in place, in one all-reduce of one flat
/// fp32 buffer (a few large calls rather than one per tensor). Each keeps its shape, device and
/// dtype.
pub fn sum_tensors(tensors: &mut [&mut candle_core::Tensor]) -> Result<()> {
    if size() == 1 {
        return Ok(());
    }
    let mut flat: Vec<f32> = Vec::new();
    for t in tensors.iter() {
        let t = t.to_dtype(candle_core::DType::F32)?.flatten_all()?;
        flat.extend(t.to_vec1::<f32>()?);
    }
    sum_f32(&mut flat);
    let mut at = 0;
    for t in tensors.iter_mut() {
        let n = t.elem_count();
        let summed = candle_core::Tensor::from_slice(&flat[at..at + n], t.shape(), t.device())?;
        **t = summed.to_dtype(t.dtype())?;
        at += n;
    }
    Ok(())
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
    if ranks % world != 0 {
        return Err(Everywhere(format!(
            "train.ranks = {ranks} is not a multiple of the world size {world} (mpirun -np): use a world size that divides it"
        ))
        .into());
    }
    let k = ranks / world;
    Ok(p * k..(p + 1) * k)
}
