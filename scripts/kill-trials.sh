#!/usr/bin/env bash
# kill -9 trials: a run that checkpoints every step is killed at a random moment, then resumed
# with --resume to the end; its per-step losses must equal a straight run's, bit for bit, and no
# temporary or incomplete checkpoint may survive the resume.
#
#   scripts/kill-trials.sh [TRIALS=20] [BIN=target/release/speedrun]
#
# Prints one line per trial and a final "N passed, M failed" line; exits non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-20}
bin=${2:-target/release/speedrun}
[ -x "$bin" ] || { echo "kill-trials: $bin not built (cargo build --release)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RAYON_NUM_THREADS=1
tiny=(--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 --set model.seq_len=32
      --set train.batch_tokens=256 --set train.micro_batch=4 --set train.steps=40
      --set train.warmdown_steps=10 --set train.val_every=5 --set train.val_tokens=256
      --set train.val_micro_batch=4 --set train.checkpoint_every=1 --set train.keep_checkpoints=2)

"$bin" train --runs-dir "$work" --name straight --no-progress "${tiny[@]}" >/dev/null
start=$(date +%s.%N)
"$bin" train --runs-dir "$work" --name timing --no-progress "${tiny[@]}" >/dev/null
span=$(python3 -c "print($(date +%s.%N) - $start)")

# (kind, step, loss bits) of every record, to compare two logs exactly.
records() {
  python3 - "$1" <<'EOF'
import json, struct, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    loss = r.get("loss", r.get("val_loss"))
    bits = "null" if loss is None else struct.pack(">d", loss).hex()
    print(r["kind"], r["step"], bits)
EOF
}

pass=0; fail=0
for i in $(seq 1 "$trials"); do
  name="t$i"
  delay=$(python3 -c "import random; print(round(random.uniform(0.05, $span), 3))")
  "$bin" train --runs-dir "$work" --name "$name" --no-progress "${tiny[@]}" >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  at=$(ls "$work/$name/checkpoints" 2>/dev/null | grep -c '^step_' || true)
  temps=$(ls -a "$work/$name/checkpoints" 2>/dev/null | grep -c '^\.tmp_' || true)
  if ! "$bin" train --runs-dir "$work" --name "$name" --no-progress --resume "${tiny[@]}" \
      >"$work/$name.out" 2>&1; then
    echo "trial $i: killed after ${delay}s; resume FAILED: $(tail -1 "$work/$name.out")"
    fail=$((fail + 1)); continue
  fi
  left=$(ls -a "$work/$name/checkpoints" | grep -c '^\.' || true)
  if [ "$(records "$work/straight/log.jsonl")" == "$(records "$work/$name/log.jsonl")" ] \
      && [ "$left" -le 2 ]; then
    echo "trial $i: killed after ${delay}s ($at checkpoints, $temps temp dirs); resumed, identical"
    pass=$((pass + 1))
  else
    echo "trial $i: killed after ${delay}s; log differs from the straight run or temporaries left"
    fail=$((fail + 1))
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
