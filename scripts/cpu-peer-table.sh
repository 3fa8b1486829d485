#!/usr/bin/env bash
# speedrun against PyTorch eager on the same CPU, model, threads and optimizer, on four shapes
# (docs/perf.md): `speedrun bench model --peer`, interleaved REPS times per configuration (every
# configuration once, then again), then the median tok/s of each side, their ratio, and the
# largest peak RSS of each side.
#   scripts/cpu-peer-table.sh            # needs target/release/speedrun and .venv (scripts/setup-venv.sh)
#   OPTIMS="adamw" REPS=1 scripts/cpu-peer-table.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B="${SPEEDRUN:-target/release/speedrun}"
PY="${PYTHON:-.venv/bin/python}"
T="${THREADS:-2}"
REPS="${REPS:-3}"
OPTIMS="${OPTIMS:-adamw muon}"
# layers heads width seq_len sequences-per-step steps
CONFIGS=("4 4 128 128 8 3" "4 4 256 256 8 3" "6 6 384 256 8 3" "12 12 768 1024 1 2")
LOG=$(mktemp)
echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $B, $T threads, $REPS interleaved repeats" >&2
for rep in $(seq "$REPS"); do
  for optim in $OPTIMS; do
    for c in "${CONFIGS[@]}"; do
      read -r L H D S NB STEPS <<< "$c"
      out=$("$B" --threads "$T" bench model --optim "$optim" --steps "$STEPS" --warmup 1 --peer --python "$PY" \
        --set model.n_layer="$L" --set model.n_head="$H" --set model.n_embd="$D" --set model.seq_len="$S" \
        --set train.batch_tokens=$((NB * S)) --set train.micro_batch="$NB" --set train.ranks=1 \
        --set train.val_micro_batch=1 --set train.val_tokens="$S" 2>&1 | grep -E '^(speedrun|pytorch|  )')
      echo "$out" >&2
      tok=$(echo "$out" | grep -E '^(speedrun|pytorch)' | grep -o '[0-9.]* tok/s' | grep -o '^[0-9.]*' | tr '\n' ' ')
      rss=$(echo "$out" | grep -o 'peak RSS [0-9.]*' | grep -o '[0-9.]*$' | tr '\n' ' ')
      echo "$optim L$L/D$D/T$S/B$NB $tok $rss" >> "$LOG"
    done
  done
done
python3 - "$LOG" <<'PY'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    # optimizer config speedrun-tok/s pytorch-tok/s speedrun-RSS-GiB pytorch-RSS-GiB
    runs[(f[0], f[1])].append(tuple(float(x) for x in f[2:6]))
print("| optimizer | config | speedrun tok/s (median) | PyTorch tok/s (median) | speedrun / PyTorch | ratios of the repeats | peak RSS speedrun / PyTorch (GiB) |")
print("|---|---|---|---|---|---|---|")
for (optim, cfg), v in runs.items():
    s = statistics.median(x[0] for x in v); p = statistics.median(x[1] for x in v)
    rs = " ".join(f"{x[0] / x[1]:.2f}" for x in v)
    rss = f"{max(x[2] for x in v):.2f} / {max(x[3] for x in v):.2f}"
    print(f"| {optim} | {cfg} | {s:.0f} | {p:.0f} | {s / p:.2f} | {rs} | {rss} |")
PY
rm -f "$LOG"
