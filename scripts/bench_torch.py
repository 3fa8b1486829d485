"""PyTorch peer of `speedrun bench model`: one full training step of the record-4 GPT
(scripts/gpt_ref.py) on random tokens -- forward + backward over the micro-batches of a step, then the
optimizer -- with the same shapes, threads and optimizer setup as the Rust bench.

  .venv/bin/python scripts/bench_torch.py --n-layer 4 --n-head 4 --n-embd 128 --seq-len 128 \
      --batch 8 --accum 4 --steps 5 --warmup 2 --threads 2 --optim muon

--optim muon: record 4's split (AdamW on the tied matrix, Muon with NS5 in the compute dtype on every
block matrix); --optim adamw: AdamW on everything. --compile wraps the model in torch.compile (the GPU
bench uses it; on CPU it needs a C++ toolchain). Prints one JSON line with the median step time.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_optim_torch import ns5  # noqa: E402
from gpt_ref import GPT, add_shape_args, config_of  # noqa: E402


class Muon(torch.optim.Optimizer):
    """Record-4 Muon: Nesterov momentum, NS5, sqrt(max(rows, cols)) scale, packed QKV split in 3."""

    def __init__(self, params, lr=0.00036, momentum=0.95, ns_dtype=torch.float32):
        super().__init__(params, dict(lr=lr, momentum=momentum))
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                g = p.grad
                buf = self.state[p].setdefault("buf", torch.zeros_like(g))
                buf.mul_(mu).add_(g)
                u = g.add(buf, alpha=mu)
                rows, cols = u.shape
                blocks = u.split(cols) if rows == 3 * cols else (u,)
                o = torch.cat([ns5(b, 5, self.ns_dtype) * max(b.shape) ** 0.5 for b in blocks])
                p.add_(o, alpha=-lr)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_args(p)
    p.add_argument("--batch", type=int, default=8, help="sequences per micro-batch")
    p.add_argument("--accum", type=int, default=1, help="micro-batches per step")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--optim", choices=["muon", "adamw"], default="muon")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    cfg = config_of(a)
    model = GPT(cfg).to(dev)
    fwd = torch.compile(model) if a.compile else model
    bf16 = a.precision == "bf16"
    wte = model.transformer.wte.weight
    if a.optim == "muon":
        mats = [q for n, q in model.named_parameters() if q is not wte]
        opts = [torch.optim.AdamW([wte], lr=0.0036, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0),
                Muon(mats, ns_dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32)]
    else:
        opts = [torch.optim.AdamW(model.parameters(), lr=0.0018, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)]

    def step():
        for _ in range(a.accum):
            idx = torch.randint(0, a.vocab, (a.batch, a.seq_len), device=dev)
            tgt = torch.randint(0, a.vocab, (a.batch, a.seq_len), device=dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                _, loss = fwd(idx, tgt)
            (loss / a.accum).backward()
        for o in opts:
            o.step()
        model.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        step()
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    tokens = a.batch * a.seq_len * a.accum
    out = {
        "label": f"torch {torch.__version__} {dev.type} {a.precision} {a.optim}" + (" compiled" if a.compile else ""),
        "step_ms": round(ms, 2),
        "tokens_per_s": round(tokens / (ms / 1e3), 1),
        "threads": torch.get_num_threads(),
        "steps": a.steps,
        # Peak resident set of this process (ru_maxrss is in KiB on Linux).
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if dev.type == "cuda":
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
