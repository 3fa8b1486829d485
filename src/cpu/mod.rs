//! CPU kernels that candle's primitives cannot express efficiently: the fused attention,
//! cross-entropy and transformer sub-blocks live with the model; here are the pieces several of
//! them share — a bounds-checked fp32 GEMM on slices ([`gemm`]), in-place updates of existing
//! tensors ([`inplace`]), which spare the hot path a fresh allocation per operation, and access to
//! the fp32 data of CPU tensors from inside a custom op.

pub mod gemm;
pub mod inplace;
pub mod vmath;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, DType, Layout, Result, Storage, Tensor};

/// The contiguous fp32 data of a CPU storage under `layout`, or an error naming `what`.
pub fn f32_data<'a>(s: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        bail!("{what} must be f32, got {:?}", s.dtype())
    };
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{what} must be contiguous"),
    }
}

/// Mutable [`f32_data`].
pub fn f32_data_mut<'a>(
    s: &'a mut CpuStorage,
    layout: &Layout,
    what: &str,
) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = s else {
        bail!("{what} must be f32")
    };
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&mut data[a..b]),
        None => bail!("{what} must be contiguous"),
    }
}

/// Call `f` with the fp32 data of CPU tensors (made contiguous fp32 first where they are not),
/// as a custom op's backward reads its saved inputs and the incoming gradient. `names` name the
/// tensors in errors.
pub fn with_f32<R>(
    tensors: &[&Tensor],
    names: &[&str],
    f: impl FnOnce(&[&[f32]]) -> Result<R>,
) -> Result<R> {
    let owned = tensors
        .iter()
        .map(|t| t.to_dtype(DType::F32)?.contiguous())
        .collect::<Result<Vec<_>>>()?;
    let guards: Vec<_> = owned.iter().map(|t| t.storage_and_layout()).collect();
    let data = guards
        .iter()
        .zip(names)
        .map(|((s, l), what)| match &**s {
            Storage::Cpu(c) => f32_data(c, l, what),
            _ => bail!("{what} must be on the CPU"),
        })
        .collect::<Result<Vec<_>>>()?;
    f(&data)
}
