#!/usr/bin/env bash
# Everything to measure on a GPU host in one run (docs/cuda.md). Run from the repo root on the host:
#   scripts/gpu-bench.sh [SPEEDRUN_BIN] [PYTHON]      (defaults: dist/speedrun-cuda, /opt/torch/.venv/bin/python)
# Writes raw outputs to ${OUT:-gpu-bench-out}/ and prints them. Record every number in docs/perf.md.
set -uo pipefail
BIN="${1:-dist/speedrun-cuda}"
PY="${2:-/opt/torch/.venv/bin/python}"
OUT="${OUT:-gpu-bench-out}"
mkdir -p "$OUT"
CU13=$("$PY" -c 'import nvidia, os; print(os.path.join(os.path.dirname(nvidia.__path__[0] if hasattr(nvidia, "__path__") else nvidia.__file__), "nvidia", "cu13", "lib"))' 2>/dev/null)
[ -d "$CU13" ] || CU13=$(ls -d "$(dirname "$(dirname "$PY")")"/lib/python3*/site-packages/nvidia/cu13/lib | head -n 1)
export LD_LIBRARY_PATH="$CU13:${LD_LIBRARY_PATH:-}"
[ -f "$BIN.gz" ] && [ ! -x "$BIN" ] && gunzip -k "$BIN.gz" && chmod +x "$BIN"

run() { echo "\$ $*" | tee -a "$OUT/log.txt"; "$@" 2>&1 | tee -a "$OUT/log.txt"; }

run nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
run "$BIN" --version
# 1. record-4 step (524,288 tokens, bf16, Muon) on synthetic tokens, next to PyTorch + torch.compile.
run "$BIN" bench model --config speedrun-124m --device cuda --steps 20 --warmup 3 --peer --python "$PY" --peak-tflops 989
run "$BIN" bench model --config speedrun-124m --device cuda --optim adamw --steps 10 --warmup 3 --peer --python "$PY" --peak-tflops 989
# 2. optimizer steps on the 124M shapes, and the PyTorch Muon step.
run "$BIN" bench optim --device cuda --iters 10
run "$PY" scripts/bench_optim_torch.py --device cuda --iters 10 --compile
# 2b. one optimizer-diagnostics pass on the 124M shapes (sets speedrun-124m's diagnostics_every).
run "$BIN" bench diag --device cuda --iters 3
# 3. CPU vs GPU loss agreement on a tiny model (fp32 both; then bf16 on the GPU).
TINY=(--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=64 --set model.seq_len=64
      --set train.batch_tokens=1024 --set train.micro_batch=8 --set train.steps=20 --set train.warmdown_steps=5
      --set train.val_every=10 --set train.val_tokens=1024 --set train.val_micro_batch=8 --no-progress)
run "$BIN" train --runs-dir "$OUT/agree" --name cpu --device cpu "${TINY[@]}"
run "$BIN" train --runs-dir "$OUT/agree" --name gpu-fp32 --device cuda --precision fp32 "${TINY[@]}"
run "$BIN" train --runs-dir "$OUT/agree" --name gpu-bf16 --device cuda --precision bf16 "${TINY[@]}"
run "$BIN" compare "$OUT/agree/cpu" "$OUT/agree/gpu-fp32" "$OUT/agree/gpu-bf16"
# 4. Data parallel, only where the host has several GPUs and the binary was built with
#    FEATURES=cuda,nccl scripts/build-cuda.sh (mpirun from Debian's openmpi-bin): record 4 itself
#    on every GPU, one process per GPU, NCCL gradients, then the same config on one GPU for the
#    per-step time it should divide. log.jsonl's comm_ms is the all-reduce + all-gather time.
NGPU=$(nvidia-smi --list-gpus 2>/dev/null | wc -l)
if [ "$NGPU" -ge 2 ] && command -v mpirun >/dev/null && "$BIN" --version | grep -q nccl; then
  NCCL_LIB=$(ls -d "$(dirname "$CU13")"/../nccl/lib 2>/dev/null | head -n 1)
  MP=(mpirun --allow-run-as-root --bind-to none -np "$NGPU" -x LD_LIBRARY_PATH="$CU13:$NCCL_LIB:${LD_LIBRARY_PATH:-}")
  DP=(--config speedrun-124m --device cuda --set train.steps=30 --set train.val_every=0 --set train.checkpoint_every=0 --no-progress)
  run "${MP[@]}" "$BIN" train --runs-dir "$OUT/dp" --name "np$NGPU" "${DP[@]}"
  run "$BIN" train --runs-dir "$OUT/dp" --name np1 "${DP[@]}"
  run "$BIN" compare "$OUT/dp/np$NGPU" "$OUT/dp/np1"
fi
echo "raw outputs in $OUT/"
