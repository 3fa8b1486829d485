"""Golden per-step losses for `train::tests::golden` (src/train/tests/golden.rs): record 4's and
NM-1's training loops (scripts/record4_ref.py) on a tiny record-4-shaped GPT, from one init and
the same shards as the Rust test.

Writes tests/fixtures/golden_train/:
  golden_train_000001.bin, golden_train_000002.bin, golden_val_000000.bin
      the first tokens of the shipped tinyshakespeare shards, ids remapped to a 512-token vocab
      (the 511 most frequent train ids by rank, every other id to 511), so the fixture is small;
      two train shards of 2,500 and 3,000 tokens, so the runs cross a shard boundary and wrap;
  init.safetensors   the initial weights (torch seed 4, PyTorch's default Linear init);
and prints, per case, one line per validation and per train step:
  CASE val STEP LOSS
  CASE train STEP MEAN LAST
MEAN is the mean over every micro-batch of every rank (speedrun's `loss`), LAST rank 0's last
micro-batch (the records' `train_loss`). The Rust test reads this printout from
tests/fixtures/golden_train/expected.txt. Run from the repo root:
  .venv/bin/python scripts/golden_train.py > tests/fixtures/golden_train/expected.txt
"""

import os
import struct
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_ref import GPT, GPTConfig  # noqa: E402
import record4_ref as ref  # noqa: E402

OUT = "tests/fixtures/golden_train"
VOCAB = 512
SRC_TRAIN = "data/tinyshakespeare/tinyshakespeare_train_000001.bin"
SRC_VAL = "data/tinyshakespeare/tinyshakespeare_val_000000.bin"

# (name, config). B: sequences per loader call and rank, A: calls per rank and step, W: ranks.
BASE = dict(T=32, steps=48, warmdown=16, val_every=8, val_tokens=256, head_lr=0.02, muon_lr=0.002)
CASES = [
    # Record 4's layout: W ranks of one call each; each rank repeats its own window 0.
    ("muon_w2", dict(BASE, optim="muon", B=2, world=2, accum=1)),
    # One process accumulating 4 calls of 1 sequence: the repeat shifts the stream by one call.
    ("muon_w1", dict(BASE, optim="muon", B=1, world=1, accum=4)),
    # NM-1's layout (one GPU, accumulation), refresh every 8 steps: first refresh at step 7.
    ("nm_w1", dict(BASE, optim="newton-muon", B=2, world=1, accum=2, refresh=8, head_lr=0.04, muon_lr=0.004)),
]


def write_shard(path, tokens):
    header = np.zeros(256, dtype=np.int32)
    header[:3] = [20240520, 1, len(tokens)]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype=np.uint16).tobytes())


def make_data():
    train = ref.read_shard(SRC_TRAIN)[:5500].astype(np.int64)
    val = ref.read_shard(SRC_VAL)[:1024].astype(np.int64)
    ids, counts = np.unique(train, return_counts=True)
    order = sorted(zip(-counts, ids))[: VOCAB - 1]
    remap = {int(i): r for r, (_, i) in enumerate(order)}
    m = lambda xs: [remap.get(int(x), VOCAB - 1) for x in xs]
    os.makedirs(OUT, exist_ok=True)
    write_shard(f"{OUT}/golden_train_000001.bin", m(train[:2500]))
    write_shard(f"{OUT}/golden_train_000002.bin", m(train[2500:5500]))
    write_shard(f"{OUT}/golden_val_000000.bin", m(val))
    return [f"{OUT}/golden_train_000001.bin", f"{OUT}/golden_train_000002.bin"], [f"{OUT}/golden_val_000000.bin"]


def fresh_model():
    torch.manual_seed(4)
    return GPT(GPTConfig(vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, seq_len=32))


def main():
    torch.set_num_threads(1)
    train_files, val_files = make_data()
    weights = {n: p.detach().contiguous() for n, p in fresh_model().named_matrices().items()}
    save_file(weights, f"{OUT}/init.safetensors")
    for name, cfg in CASES:
        model = fresh_model()

        def log(kind, step, values, name=name):
            print(" ".join([name, kind, str(step)] + [f"{v:.9e}" for v in values]))

        ref.train(model, cfg, train_files, val_files, log)


if __name__ == "__main__":
    main()
