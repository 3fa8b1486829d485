"""PyTorch peer of `speedrun bench optim`: the record-4 Muon step (momentum, Nesterov, quintic
Newton–Schulz ×5, √max(rows, cols) scale, q/k/v as three d×d matrices as record 4 had them) over
the 124M model's block matrices, one matrix at a time as in the record's optimizer.

Prints a human line and, last, one JSON line {"label", "step_ms", ...} (median over --iters).
Run from the repo root:  .venv/bin/python scripts/bench_optim_torch.py [--device cuda] [--iters 20]
"""

import argparse
import json
import statistics
import time

import torch


def ns5(g, steps, dtype):
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.to(dtype)
    x = x / (x.float().norm() + 1e-7).to(dtype)
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        s = x @ x.T
        x = a * x + (b * s + c * s @ s) @ x
    return (x.T if tall else x).float()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-layer", type=int, default=12)
    ap.add_argument("--n-embd", type=int, default=768)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true", help="torch.compile the NS function (record 4 did)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    d = args.n_embd
    # q, k, v (3 of d×d), attn.c_proj d×d, mlp.c_fc 4d×d, mlp.c_proj d×4d per layer.
    shapes = [(d, d)] * 4 + [(4 * d, d), (d, 4 * d)]
    gen = torch.Generator(device="cpu").manual_seed(0)
    params = [torch.randn(s, generator=gen).mul_(0.02).to(dev) for _ in range(args.n_layer) for s in shapes]
    grads = [torch.randn(p.shape, generator=gen).mul_(1e-3).to(dev) for p in params]
    bufs = [torch.zeros_like(p) for p in params]
    orth = torch.compile(ns5) if args.compile else ns5
    lr, mu = 0.00036, 0.95

    def step():
        for p, g, buf in zip(params, grads, bufs):
            buf.mul_(mu).add_(g)
            u = g.add(buf, alpha=mu)
            o = orth(u, 5, dtype)
            p.add_(o, alpha=-lr * max(p.size(0), p.size(1)) ** 0.5)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    ms = statistics.median(times)
    print(f"torch muon step: {ms:.1f} ms median over {args.iters} ({len(params)} matrices, {dev}, {dtype})")
    print(json.dumps({"label": f"torch-muon-{dev.type}", "step_ms": ms, "matrices": len(params),
                      "threads": torch.get_num_threads(), "dtype": str(dtype)}))


if __name__ == "__main__":
    main()
