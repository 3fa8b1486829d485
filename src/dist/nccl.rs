//! NCCL for CUDA tensors (cudarc's bindings): a multi-GPU run sums its gradients on the GPUs,
//! with no trip through host memory. MPI launches the processes and carries NCCL's unique id from
//! rank 0 to the others; NCCL carries the data.

use std::cell::RefCell;
use std::ffi::c_char;

use anyhow::{anyhow, Result};
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Device, Layout, Shape, Tensor};

thread_local! {
    /// The world's communicator, on this process's GPU (the trainer's thread makes every call).
    static COMM: RefCell<Option<Comm>> = const { RefCell::new(None) };
}

/// Join the world's NCCL communicator on `device`, this process's GPU. Every process calls it
/// at the same point; a CPU device or a world of one needs none.
pub fn init(device: &Device) -> Result<()> {
    let (rank, world) = super::imp::rank_size();
    let Device::Cuda(dev) = device else {
        return Ok(());
    };
    if world == 1 || COMM.with(|c| c.borrow().is_some()) {
        return Ok(());
    }
    let mut bytes = [0u8; 128];
    if rank == 0 {
        let id = Id::new().map_err(|e| anyhow!("NCCL: cannot make the unique id: {e:?}"))?;
        for (b, c) in bytes.iter_mut().zip(id.internal()) {
            *b = *c as u8;
        }
    }
    super::imp::broadcast_bytes(&mut bytes);
    let mut internal = [0 as c_char; 128];
    for (c, b) in internal.iter_mut().zip(bytes) {
        *c = b as c_char;
    }
    let comm = Comm::from_rank(dev.cuda_stream(), rank, world, Id::uninit(internal))
        .map_err(|e| anyhow!("NCCL: rank {rank} of {world} cannot join: {e:?}"))?;
    COMM.with(|c| *c.borrow_mut() = Some(comm));
    Ok(())
}

/// Whether CUDA tensors can be summed over NCCL (`init` ran on a GPU, world > 1).
pub fn ready() -> bool {
    COMM.with(|c| c.borrow().is_some())
}

/// The element-wise sum of a flat fp32 CUDA tensor over every process.
pub fn sum(flat: &Tensor) -> Result<Tensor> {
    Ok(flat.apply_op1_no_bwd(&AllReduceSum)?)
}

/// ncclAllReduce(sum) as a candle op: its CUDA forward reads the input's storage and writes a
/// new buffer on the same stream, so it orders with the kernels around it.
struct AllReduceSum;

impl CustomOp1 for AllReduceSum {
    fn name(&self) -> &'static str {
        "nccl-all-reduce-sum"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("the NCCL all-reduce takes CUDA tensors")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let (start, end) = l
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("NCCL all-reduce: not contiguous".into()))?;
        let src = s.as_cuda_slice::<f32>()?.slice(start..end);
        let mut dst = s.device.alloc_zeros::<f32>(end - start)?;
        COMM.with(|c| match c.borrow().as_ref() {
            Some(comm) => comm
                .all_reduce(&src, &mut dst, &ReduceOp::Sum)
                .map(|_| ())
                .map_err(|e| candle_core::Error::Cuda(format!("ncclAllReduce: {e:?}").into())),
            None => Err(candle_core::Error::Msg("NCCL is not initialised".into())),
        })?;
        Ok((
            CudaStorage::wrap_cuda_slice(dst, s.device.clone()),
            l.shape().clone(),
        ))
    }
}
