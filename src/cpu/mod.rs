//! CPU kernels that candle's primitives cannot express efficiently: the fused attention and
//! cross-entropy live with the model; here are the pieces several of them share — a bounds-checked
//! fp32 GEMM on slices ([`gemm`]) and in-place updates of existing tensors ([`inplace`]), which
//! spare the hot path a fresh allocation per operation.

pub mod gemm;
pub mod inplace;
