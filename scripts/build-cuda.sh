#!/usr/bin/env bash
# Build `speedrun` with CUDA on a machine WITHOUT a CUDA install (no GPU needed), from PyPI wheels.
# Recipe and measurements: docs/cuda.md. Output: dist/speedrun-cuda (stripped) and dist/speedrun-cuda.gz.
#
#   scripts/build-cuda.sh                 # CUDA 13.0 wheels, sm_90 (H100); ~680 MB download, ~10 min on 2 cores
#   CUDA_COMPUTE_CAP=80 scripts/build-cuda.sh   # another GPU generation
#   FEATURES=cuda,nccl scripts/build-cuda.sh     # multi-GPU (NCCL over MPI: needs Debian's libopenmpi-dev
#                                                # and libclang-dev); adds the NCCL wheel (~300 MB)
#
# With a system CUDA toolkit (nvcc on PATH), plain `cargo build --release --features cuda` is enough.
# Run the result on the GPU host with the CUDA 13 libraries on LD_LIBRARY_PATH, e.g. a PyTorch cu130 venv:
#   LD_LIBRARY_PATH=$VENV/lib/python3.12/site-packages/nvidia/cu13/lib ./speedrun-cuda train --device cuda ...
set -euo pipefail
cd "$(dirname "$0")/.."

CUDA_PIP_VERSION="${CUDA_PIP_VERSION:-13.0.2}"   # driver 580 = CUDA 13.0: newer nvcc emits PTX it rejects
# cudarc 0.19's `nccl` feature binds NCCL 2.30; only long-standing entry points are called, so an
# older libnccl.so.2 (PyTorch's) serves at run time.
NCCL_PIP_VERSION="${NCCL_PIP_VERSION:-2.30.7}"
FEATURES="${FEATURES:-cuda}"
VENV="${CUDA_VENV:-.cuda-venv}"
LINKS="${CUDA_LINK_DIR:-$PWD/target/cuda-links}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"

if [ ! -x "$VENV/bin/nvcc-installed" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  # cccl brings the thrust headers candle-kernels needs.
  "$VENV/bin/pip" install --quiet "cuda-toolkit[nvcc,crt,nvvm,cccl,cudart,curand,nvrtc,cublas]==${CUDA_PIP_VERSION}"
  touch "$VENV/bin/nvcc-installed" && chmod +x "$VENV/bin/nvcc-installed"
fi
if [[ ",$FEATURES," == *",nccl,"* ]] && [ ! -e "$VENV/bin/nccl-installed" ]; then
  "$VENV/bin/pip" install --quiet "nvidia-nccl-cu13==${NCCL_PIP_VERSION}"
  touch "$VENV/bin/nccl-installed"
fi
NV=$(ls -d "$VENV"/lib/python3*/site-packages/nvidia/cu13 | head -n 1)
NV=$(cd "$NV" && pwd)
[ -x "$NV/bin/nvcc" ] || { echo "error: $NV/bin/nvcc missing: the cuda-toolkit wheel install failed" >&2; exit 1; }

# The wheels ship only versioned libraries: give the linker unversioned names.
mkdir -p "$LINKS"
for lib in cublas cublasLt cudart nvrtc; do
  ln -sf "$NV/lib/lib$lib.so.13" "$LINKS/lib$lib.so"
done
ln -sf "$NV/lib/libcurand.so.10" "$LINKS/libcurand.so"
if [[ ",$FEATURES," == *",nccl,"* ]]; then
  NCCL_LIB=$(ls "$VENV"/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2 | head -n 1)
  ln -sf "$(cd "$(dirname "$NCCL_LIB")" && pwd)/libnccl.so.2" "$LINKS/libnccl.so"
fi

# A stub libcuda.so (SONAME libcuda.so.1) with every driver entry point cudarc links against, as empty
# functions: enough to link; the real driver's libcuda.so.1 replaces it at run time.
cargo fetch --locked >/dev/null
CUDARC_SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | sort | tail -n 1)
grep -oE '\bfn (cu[A-Za-z0-9_]+)\(' "$CUDARC_SRC/src/driver/sys/mod.rs" | sed -E 's/fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u \
  | awk '{ print "void " $1 "(void) {}" }' > "$LINKS/cuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$LINKS/libcuda.so" "$LINKS/cuda_stub.c"
ln -sf libcuda.so "$LINKS/libcuda.so.1"

export PATH="$NV/bin:$PATH"
export CUDA_HOME="$NV"
export CUDA_ROOT="$LINKS"          # setting a CUDA_* root makes cudarc search only there
export LIBRARY_PATH="$LINKS:${LIBRARY_PATH:-}"
nvcc --version | tail -n 2

cargo build --release --locked --features "$FEATURES" --target-dir target/cuda
mkdir -p dist
cp target/cuda/release/speedrun dist/speedrun-cuda
strip dist/speedrun-cuda || true
gzip -kf dist/speedrun-cuda
ls -l dist/speedrun-cuda dist/speedrun-cuda.gz
echo "NEEDED:"; (readelf -d dist/speedrun-cuda | grep NEEDED) || true
# Start-up check: every library resolves (the binary is linked BIND_NOW), with the stub driver.
NCCL_DIR=$(dirname "$(readlink -f "$LINKS/libnccl.so" 2>/dev/null || echo /)")
LD_LIBRARY_PATH="$LINKS:$NV/lib:$NCCL_DIR:${LD_LIBRARY_PATH:-}" dist/speedrun-cuda --version
