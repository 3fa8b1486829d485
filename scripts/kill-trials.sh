#!/usr/bin/env bash
# Kill and signal trials. A run that validates every 5 steps and checkpoints every step is
# stopped, resumed with --resume to the end, and its whole log (every record's kind, step and
# loss bits: train, val, target, ...) and its summary's headline fields must equal a straight
# run's; no temporary checkpoint may survive the resume.
#
#   kill -9 trials: SIGKILL at a random moment.
#   signal trials: SIGINT or SIGTERM, aimed in turn at a step that owes a validation (sent when
#     the train record before it appears), at the last step, mid-checkpoint (sent when a
#     temporary checkpoint directory appears) and at a random moment. The run must exit
#     130/143 with "interrupted at step N" and a checkpoint of step N (or finish, exit 0, when
#     the signal came after its end).
#
#   scripts/kill-trials.sh [TRIALS=20] [BIN=target/release/speedrun]
#
# TRIALS of each kind. Prints one line per trial and a final "N passed, M failed" line; exits
# non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-20}
bin=${2:-target/release/speedrun}
[ -x "$bin" ] || { echo "kill-trials: $bin not built (cargo build --release)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RAYON_NUM_THREADS=1
steps=40
tiny=(--set model.n_layer=2 --set model.n_head=2 --set model.n_embd=32 --set model.seq_len=32
      --set train.batch_tokens=256 --set train.micro_batch=4 --set train.steps=$steps
      --set train.warmdown_steps=10 --set train.val_every=5 --set train.val_tokens=256
      --set train.val_micro_batch=4 --set train.checkpoint_every=1 --set train.keep_checkpoints=2
      --set train.target_loss=9.5)

"$bin" train --runs-dir "$work" --name straight --no-progress "${tiny[@]}" >/dev/null
start=$(date +%s.%N)
"$bin" train --runs-dir "$work" --name timing --no-progress "${tiny[@]}" >/dev/null
span=$(python3 -c "print($(date +%s.%N) - $start)")
grep -q '"kind":"target"' "$work/straight/log.jsonl" \
  || { echo "kill-trials: the straight run never reaches its target; raise train.target_loss" >&2; exit 2; }

# Every record of a log as (kind, step, loss bits), and the summary's headline fields.
records() {
  python3 - "$1" <<'EOF'
import json, struct, sys
d = sys.argv[1]
for line in open(d + "/log.jsonl"):
    r = json.loads(line)
    loss = r.get("loss", r.get("val_loss"))
    bits = "null" if loss is None else struct.pack(">d", loss).hex()
    print(r["kind"], r["step"], bits)
s = json.load(open(d + "/summary.json"))
print("summary", *(s.get(k) for k in ["finished", "final_step", "final_val_loss",
      "reached_target", "target_step", "target_tokens", "status"]))
EOF
}
want=$(records "$work/straight")

# Same records and no temporary checkpoint left: "identical", else what differs.
verdict() {
  local dir=$1 got left
  got=$(records "$dir")
  left=$(ls -a "$dir/checkpoints" | grep -c '^\.tmp_' || true)
  if [ "$got" != "$want" ]; then
    echo "log or summary differs from the straight run: $(diff <(echo "$want") <(echo "$got") | grep '^[<>]' | head -2 | tr '\n' ' ')"
  elif [ "$left" -gt 0 ]; then
    echo "$left temporary checkpoint(s) left"
  else
    echo identical
  fi
}

# Wait (at most 60 s) until the run in $1 (process $2) shows $3: a log line, or "tmpdir".
wait_for() {
  local dir=$1 pid=$2 what=$3 t=0
  while kill -0 "$pid" 2>/dev/null && [ $t -lt 12000 ]; do
    if [ "$what" = tmpdir ]; then
      ls -a "$dir/checkpoints" 2>/dev/null | grep -q '^\.tmp_' && return 0
    else
      grep -q "$what" "$dir/log.jsonl" 2>/dev/null && return 0
    fi
    sleep 0.005; t=$((t + 1))
  done
}

resume() {
  "$bin" train --runs-dir "$work" --name "$1" --no-progress --resume "${tiny[@]}" >"$work/$1.out" 2>&1
}

pass=0; fail=0
report() {
  if [ "$2" = identical ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
  echo "$1; $2"
}

for i in $(seq 1 "$trials"); do
  name="k$i"
  delay=$(python3 -c "import random; print(round(random.uniform(0.05, $span), 3))")
  "$bin" train --runs-dir "$work" --name "$name" --no-progress "${tiny[@]}" >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  at=$(ls "$work/$name/checkpoints" 2>/dev/null | grep -c '^step_' || true)
  temps=$(ls -a "$work/$name/checkpoints" 2>/dev/null | grep -c '^\.tmp_' || true)
  what="kill -9 trial $i: killed after ${delay}s ($at checkpoints, $temps temp dirs)"
  if ! resume "$name"; then report "$what" "resume FAILED: $(tail -1 "$work/$name.out")"; continue; fi
  report "$what; resumed" "$(verdict "$work/$name")"
done

aims=(validation last-step mid-checkpoint random)
for i in $(seq 1 "$trials"); do
  name="s$i"
  aim=${aims[$(( (i - 1) % 4 ))]}
  sig=$([ $((i % 2)) -eq 0 ] && echo TERM || echo INT)
  "$bin" train --runs-dir "$work" --name "$name" --no-progress "${tiny[@]}" >/dev/null 2>"$work/$name.err" &
  pid=$!
  case $aim in
    validation)
      owed=$(python3 -c "import random; print(5 * random.randint(1, $steps // 5 - 1))")
      wait_for "$work/$name" $pid "\"kind\":\"train\",\"step\":$((owed - 1)),"
      aim="validation at step $owed" ;;
    last-step) wait_for "$work/$name" $pid "\"kind\":\"train\",\"step\":$((steps - 1)),";;
    mid-checkpoint)
      sleep "$(python3 -c "import random; print(round(random.uniform(0.05, $span / 2), 3))")"
      wait_for "$work/$name" $pid tmpdir ;;
    random) sleep "$(python3 -c "import random; print(round(random.uniform(0.05, $span), 3))")";;
  esac
  kill -"$sig" "$pid" 2>/dev/null || true
  code=0; wait "$pid" || code=$?
  msg=$(tail -1 "$work/$name.err")
  what="signal trial $i: SIG$sig aimed at $aim: exit $code"
  case $code in
    0) what="$what (ended before the signal)" ;;
    130|143)
      stop=$(sed -n 's/^interrupted at step \([0-9]*\) .*/\1/p' <<<"$msg")
      if [ -z "$stop" ] || [ ! -f "$work/$name/checkpoints/step_$(printf %06d "$stop")/state.json" ]; then
        report "$what" "no checkpoint at the step it names: $msg"; continue
      fi
      what="$what, stopped at step $stop" ;;
    *) report "$what" "unexpected exit: $msg"; continue ;;
  esac
  if ! resume "$name"; then report "$what" "resume FAILED: $(tail -1 "$work/$name.out")"; continue; fi
  report "$what; resumed" "$(verdict "$work/$name")"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
