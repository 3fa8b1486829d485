#!/usr/bin/env bash
# The optimizer race of docs/results.md, on the shakespeare-tiny preset and the shipped corpus:
#   1. a learning-rate sweep per method (3 points, plus a 4th where the best was at an edge: Muon, Neon, Neon-F*), seed 0
#      (shared initial weights per seed);
#   2. seeds 0-2 for Muon and Newton-Muon at their best swept lr (set MUON_LR / NM_LR).
# Resumable: rerunning skips finished runs. ~2.5 min per run on a 2-core CPU (release build).
set -euo pipefail
cd "$(dirname "$0")/.."
B="${SPEEDRUN:-target/release/speedrun}"
OUT="${OUT:-runs/race-shakespeare}"
stage="${1:-sweep}"

if [ "$stage" = sweep ]; then
  "$B" race --config shakespeare-tiny --out "$OUT" --seeds 1 --no-progress \
    --optims "muon@muon-lr0.00036:optim.muon.lr=0.00036" \
    --optims "muon@muon-lr0.001:optim.muon.lr=0.001" \
    --optims "muon@muon-lr0.003:optim.muon.lr=0.003" \
    --optims "muon@muon-lr0.009:optim.muon.lr=0.009" \
    --optims "newton-muon@nm-lr0.0004:optim.newton_muon.lr=0.0004" \
    --optims "newton-muon@nm-lr0.0012:optim.newton_muon.lr=0.0012" \
    --optims "newton-muon@nm-lr0.0036:optim.newton_muon.lr=0.0036" \
    --optims "adamw@adamw-lr0.0018:optim.adamw.lr=0.0018" \
    --optims "adamw@adamw-lr0.0036:optim.adamw.lr=0.0036" \
    --optims "adamw@adamw-lr0.0072:optim.adamw.lr=0.0072" \
    --optims "neon@neon-lr0.0012:optim.neon.lr=0.0012" \
    --optims "neon@neon-lr0.0036:optim.neon.lr=0.0036" \
    --optims "neon@neon-lr0.011:optim.neon.lr=0.011" \
    --optims "neon@neon-lr0.036:optim.neon.lr=0.036" \
    --optims "neon-fstar@fstar-lr0.0125:optim.neon_fstar.lr=0.0125" \
    --optims "neon-fstar@fstar-lr0.05:optim.neon_fstar.lr=0.05" \
    --optims "neon-fstar@fstar-lr0.2:optim.neon_fstar.lr=0.2" \
    --optims "neon-fstar@fstar-lr0.8:optim.neon_fstar.lr=0.8" \
    --plot "$OUT/sweep.svg"
elif [ "$stage" = seeds ]; then
  : "${MUON_LR:?set MUON_LR to the best swept Muon lr}" "${NM_LR:?set NM_LR to the best swept Newton-Muon lr}"
  "$B" race --config shakespeare-tiny --out "$OUT" --seeds 3 --no-progress \
    --optims "muon@muon-lr${MUON_LR}:optim.muon.lr=${MUON_LR}" \
    --optims "newton-muon@nm-lr${NM_LR}:optim.newton_muon.lr=${NM_LR}" \
    --plot "$OUT/seeds.svg"
else
  echo "usage: scripts/race-shakespeare.sh [sweep|seeds]" >&2; exit 2
fi
