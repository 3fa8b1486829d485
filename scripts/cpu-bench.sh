#!/usr/bin/env bash
# The CPU measurements of docs/perf.md in one run, each next to its PyTorch peer where there is one.
# Needs the release binary (cargo build --release) and the venv (scripts/setup-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
B="${SPEEDRUN:-target/release/speedrun}"
PY="${PYTHON:-.venv/bin/python}"
T="${THREADS:-$(nproc)}"
echo "# $(date -u +%FT%TZ) $(uname -m) $(nproc) cores, threads $T, $(git rev-parse --short HEAD)"
echo "## training step, shakespeare-tiny preset (2048 tokens/step), Muon then AdamW"
"$B" --threads "$T" bench model --steps 5 --warmup 2 --peer --python "$PY"
"$B" --threads "$T" bench model --steps 5 --warmup 2 --optim adamw --peer --python "$PY"
echo "## one optimizer step on the 124M matrix shapes (48 matrices)"
"$B" --threads "$T" bench optim --iters 1
"$PY" scripts/bench_optim_torch.py --iters 1 --threads "$T"
echo "## tokenize: 42 Shakespeare works, 5.06 MB"
out=$(mktemp -d)
s=$(date +%s.%N)
"$B" data tokenize data/corpus/shakespeare_gutenberg_42.txt --out "$out" --prefix g --val-tokens 0 --threads "$T" | tail -n 2
e=$(date +%s.%N)
python3 -c "import sys; s,e=float(sys.argv[1]),float(sys.argv[2]); print(f'wall {e-s:.2f} s = {5.057827/(e-s):.2f} MB/s')" "$s" "$e"
rm -rf "$out"
