"""PyTorch CPU peer of the Rust throughput bench: forward + backward + a plain AdamW step of the
record-4 GPT (scripts/gpt_ref.py) on random tokens, fp32. Prints one JSON line with tokens/s.

  .venv/bin/python scripts/bench_torch.py --n-layer 2 --n-head 2 --n-embd 128 --seq-len 64 \
      --vocab 512 --batch 4 --steps 5 --threads 2

The first (warm-up) step is not timed.
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_ref import GPT, GPTConfig  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-layer", type=int, default=12)
    p.add_argument("--n-head", type=int, default=12)
    p.add_argument("--n-embd", type=int, default=768)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.steps < 1 or a.batch < 1 or a.threads < 1:
        p.error("--steps, --batch and --threads must be >= 1")
    if a.n_embd % a.n_head != 0 or (a.n_embd // a.n_head) % 2 != 0:
        p.error("--n-embd must be a multiple of --n-head with an even head dim")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = GPTConfig(vocab_size=a.vocab, n_layer=a.n_layer, n_head=a.n_head, n_embd=a.n_embd, seq_len=a.seq_len)
    model = GPT(cfg)
    # Plain AdamW on every parameter (the tied matrix once), default betas/eps, fp32.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)

    def step():
        idx = torch.randint(0, a.vocab, (a.batch, a.seq_len))
        tgt = torch.randint(0, a.vocab, (a.batch, a.seq_len))
        _, loss = model(idx, tgt)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    step()  # warm-up: allocator, thread pool, AdamW state
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    dt = time.perf_counter() - t0
    tokens = a.steps * a.batch * a.seq_len
    print(
        json.dumps(
            {
                "impl": "torch",
                "torch": torch.__version__,
                "threads": a.threads,
                "n_layer": a.n_layer,
                "n_head": a.n_head,
                "n_embd": a.n_embd,
                "seq_len": a.seq_len,
                "vocab": a.vocab,
                "batch": a.batch,
                "steps": a.steps,
                "params": sum(p.numel() for p in model.parameters()),
                "seconds": round(dt, 4),
                "tokens_per_s": round(tokens / dt, 1),
                "last_loss": round(loss, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
