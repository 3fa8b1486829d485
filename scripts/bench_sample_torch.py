"""PyTorch peer of `speedrun bench sample`: greedy generation with the record-4 GPT of
scripts/gpt_ref.py (random weights), with the KV cache of scripts/gpt_decode.py and without it
(the whole window re-run for every token), with the same shapes, prompt length and threads as the
Rust bench. Prints one JSON line: per mode, the time to the first token (the prompt's forward and
one argmax) and the tokens per second after it, each the median of --repeats runs.

  .venv/bin/python scripts/bench_sample_torch.py --n-layer 4 --n-head 4 --n-embd 128 \\
      --seq-len 128 --prompt-tokens 16 --tokens 64 --repeats 3 --threads 2
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_decode import generate  # noqa: E402
from gpt_ref import GPT, add_shape_args, config_of  # noqa: E402


def timed(model, prompt, n, cache):
    """(ms to the first token, tokens/s after it) of one greedy generation."""
    t0 = time.perf_counter()
    marks = []
    generate(model, prompt, n, cache=cache, on_token=lambda i: marks.append(time.perf_counter()))
    first = marks[0] - t0
    rest = marks[-1] - marks[0]
    return first * 1e3, (n - 1) / rest if rest > 0 else float("inf")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_args(p)
    p.add_argument("--prompt-tokens", type=int, default=16)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--modes", default="cache,nocache")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = config_of(a)
    model = GPT(cfg).eval()
    prompt = torch.randint(0, a.vocab, (a.prompt_tokens,)).tolist()
    # One untimed run per mode: first-call allocations and kernel selection.
    modes = a.modes.split(",")
    for m in modes:
        timed(model, prompt, 2, m == "cache")
    out = {"label": f"torch {torch.__version__} cpu fp32 eager", "threads": torch.get_num_threads()}
    for m in modes:
        runs = [timed(model, prompt, a.tokens, m == "cache") for _ in range(a.repeats)]
        out[m] = {
            "first_token_ms": round(statistics.median(r[0] for r in runs), 2),
            "tok_per_s": round(statistics.median(r[1] for r in runs), 2),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
