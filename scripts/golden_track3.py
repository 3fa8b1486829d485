"""Golden per-step losses of the three Track-3 setups (scripts/track3_ref.py) on a tiny model.

From one init, on the shards of scripts/golden_train.py (vocab 512), three cases:
  muon36  B's AdamW + Muon (the tuned baseline, result #36)
  nm15    NM's Newton-Muon (result #15), refresh every 2 steps: statistics and a refresh on steps
          1, 3, 5, ... (0-based), so step 0 is not preconditioned
  adam2   A2's all-AdamW (result #2), warmup 4 steps on every group
Tiny config: vocab 512, 2 layers, width 64, head_dim 32 (2 heads), T 32, one rank, 4 sequences
per step in micro-batches of 2, 16 steps, cooldown 0.7; validation on the first 256 val tokens
(micro-batches of 2) at step 0, every 4 steps while step/steps < 0.9, every 2 after, and at the
last step (A2's rule, every 4 and the last, gives the same steps). Everything fp32 on the CPU,
Newton-Schulz included; the scripts' own learning rates, unscaled.

Writes tests/fixtures/golden_track3/init.safetensors (torch seed 5, B's init rule, B's parameter
names, fp32) and prints '#' header lines, then per case
  CASE val STEP LOSS      at each validation (Σ CE / val tokens)
  CASE train STEP MEAN    after each step (Σ CE over the step's 128 tokens / 128; STEP = steps done)
Run from the repo root:
  .venv/bin/python scripts/golden_track3.py > tests/fixtures/golden_track3/expected.txt

Checked against the three scripts themselves, patched to run this config on the CPU in fp32
(torchrun, gloo, 1 and 2 ranks, init.safetensors loaded, NS in fp32, no compile): every line
identical with AdamW(fused=False); with the scripts' fused=True, whose CPU kernel rounds
differently, within 1.1e-7 relative. For scale, losses move by 7e-5 if Muon's weight decay uses
the unscheduled lr, by 1e-4 with bf16 Newton-Schulz, by 2e-3 if NM's ridge stays on cov.
"""

import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import track3_ref as ref  # noqa: E402

OUT = "tests/fixtures/golden_track3"
DATA = "tests/fixtures/golden_train"
TRAIN = [f"{DATA}/golden_train_000001.bin", f"{DATA}/golden_train_000002.bin"]
VAL = [f"{DATA}/golden_val_000000.bin"]
MODEL = dict(vocab=512, layers=2, width=64, head_dim=32, seq_len=32)
BASE = dict(T=32, world=1, batch_seqs=4, mbs=2, steps=16, cooldown=0.7, val_tokens=256,
            val_every=4, val_every_late=2)
CASES = [
    ("muon36", dict(BASE)),
    ("nm15", dict(BASE, refresh=2)),
    ("adam2", dict(BASE, warmup=4)),
]


def fresh_model():
    return ref.Track3GPT(**MODEL)


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(5)
    model = fresh_model()
    ref.init_b(model)
    save_file({n: p.detach().contiguous() for n, p in model.named_parameters()}, f"{OUT}/init.safetensors")
    init = load_file(f"{OUT}/init.safetensors")
    print("# scripts/golden_track3.py: Track-3 golden losses (B = train_gpt_simple.py, NM = Newton-Muon,")
    print("# A2 = all-AdamW), fp32 CPU, vocab 512, 2 layers, width 64, head_dim 32, T 32, 1 rank,")
    print("# 4 seqs/step in micro-batches of 2, 16 steps, cooldown 0.7, 256 val tokens; init.safetensors")
    print("# for every case; the scripts' learning rates unscaled; nm15 refresh 2, adam2 warmup 4.")
    for name, cfg in CASES:
        model = fresh_model()
        model.load_state_dict(init)

        def log(kind, step, value, name=name):
            print(f"{name} {kind} {step} {value:.9e}")

        ref.train(model, name, cfg, TRAIN, VAL, log)


if __name__ == "__main__":
    main()
