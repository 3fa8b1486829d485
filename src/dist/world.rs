//! The MPI world (rsmpi on the system's MPI): joined only when an MPI launcher started this
//! process. Every call is made from the main thread, so the communicators live in a
//! thread-local.

use std::cell::RefCell;

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

struct World {
    world: SimpleCommunicator,
    /// This process's rank among the processes of its node (MPI's shared-memory split), and
    /// their number: the rank picks the GPU.
    local: (usize, usize),
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

/// Started by an MPI launcher? (OpenMPI's and the PMI variables; a plain start stays MPI-free.)
fn launched() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

pub fn init() -> Option<mpi::environment::Universe> {
    if !launched() {
        return None;
    }
    let universe = mpi::initialize()?;
    let world = universe.world();
    // The node communicator is freed here, before MPI is finalised; only its numbers are kept.
    let node = world.split_shared(world.rank());
    let local = (node.rank() as usize, node.size() as usize);
    drop(node);
    WORLD.with(|c| *c.borrow_mut() = Some(World { world, local }));
    Some(universe)
}

fn with<R>(alone: R, f: impl FnOnce(&World) -> R) -> R {
    WORLD.with(|c| match c.borrow().as_ref() {
        Some(w) => f(w),
        None => alone,
    })
}

pub fn rank_size() -> (usize, usize) {
    with((0, 1), |w| {
        (w.world.rank() as usize, w.world.size() as usize)
    })
}

pub fn local_rank_size() -> (usize, usize) {
    with((0, 1), |w| w.local)
}

pub fn sum_f32(buf: &mut [f32]) {
    with((), |w| {
        let send = buf.to_vec();
        w.world
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
    })
}

pub fn sum_f64(buf: &mut [f64]) {
    with((), |w| {
        let send = buf.to_vec();
        w.world
            .all_reduce_into(&send[..], buf, SystemOperation::sum());
    })
}

pub fn min_max_u64(x: u64) -> (u64, u64) {
    with((x, x), |w| {
        let (mut lo, mut hi) = (0u64, 0u64);
        w.world.all_reduce_into(&x, &mut lo, SystemOperation::min());
        w.world.all_reduce_into(&x, &mut hi, SystemOperation::max());
        (lo, hi)
    })
}

#[cfg_attr(not(feature = "nccl"), allow(dead_code))]
pub fn broadcast_bytes(buf: &mut [u8]) {
    with((), |w| w.world.process_at_rank(0).broadcast_into(buf))
}

pub fn abort(code: i32) -> ! {
    WORLD.with(|c| match c.borrow().as_ref() {
        Some(w) => w.world.abort(code),
        None => std::process::exit(code),
    })
}
