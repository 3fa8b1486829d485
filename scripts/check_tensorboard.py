#!/usr/bin/env python3
"""Read the event files of `speedrun export tensorboard` with TensorBoard's own reader
(EventAccumulator, as `tensorboard --logdir` uses) and compare every scalar with the runs' logs.

    speedrun export tensorboard runs/race --out /tmp/tb
    python scripts/check_tensorboard.py /tmp/tb runs/race/*/

Needs tensorboard (scripts/requirements.txt). Exits non-zero on the first mismatch.
"""
import json
import os
import statistics
import struct
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def same_f32(got, want):
    # The writer rounds the loaded f64 to f32. serde_json's default float parsing is within an
    # f64 ulp of Python's, which can flip a value lying exactly halfway between two f32s: allow
    # one f32 ulp (about 1e-7 relative).
    if got is None:
        return False
    return abs(got - f32(want)) <= abs(f32(want)) * 2.0**-23


def expected(run_dir):
    """(tag, step) -> value from log.jsonl, as speedrun documents the export (docs/reports.md)."""
    out = {}
    for line in open(os.path.join(run_dir, "log.jsonl")):
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a line cut mid-write
        s = r.get("step")
        if r.get("kind") == "train":
            out[("loss/train", s)] = r["loss"]
            out[("tokens", s)] = r["tokens"]
            out[("time/train_time_s", s)] = r["train_time_ms"] / 1000
            if r.get("step_ms", 0) > 0:
                out[("time/step_ms", s)] = r["step_ms"]
            for g, lr in r.get("lrs", {}).items():
                out[(f"lr/{g}", s)] = lr
            if "diag_ms" in r:
                out[("time/diag_ms", s)] = r["diag_ms"]
        elif r.get("kind") == "val":
            out[("loss/val", s)] = r["val_loss"]
        elif r.get("kind") == "optim":
            for k, v in r["values"].items():
                out[(f"optim/{k}", s)] = v
        elif r.get("kind") == "diag":
            # Every field of every matrix (null: not finite), and the medians over the matrices
            # of the two fields `compare` plots (the finite values only).
            for name, fields in r["layers"].items():
                for k, v in fields.items():
                    out[(f"diag/{name}/{k}", s)] = v
            for k in ("nuc_fro_ratio", "stable_rank"):
                vals = [f[k] for f in r["layers"].values() if f.get(k) is not None]
                if vals:
                    out[(f"diag/median/{k}", s)] = statistics.median(vals)
    return out


def main():
    tb, runs = sys.argv[1], sys.argv[2:]
    for run in runs:
        name = os.path.basename(run.rstrip("/"))
        acc = EventAccumulator(os.path.join(tb, name), size_guidance={"scalars": 0})
        acc.Reload()
        got = {}
        for tag in acc.Tags()["scalars"]:
            for e in acc.Scalars(tag):
                got[(tag, e.step)] = e.value
        want = expected(run)
        bad = [(k, got.get(k), v) for k, v in want.items() if v is not None and not same_f32(got.get(k), v)]
        exact = sum(1 for k, v in want.items() if v is not None and got.get(k) == f32(v))
        extra = set(got) - set(want)
        if bad or extra:
            print(f"{name}: {len(bad)} mismatches, e.g. {bad[:3]}; {len(extra)} unexpected, e.g. {sorted(extra)[:3]}")
            sys.exit(1)
        tags = sorted({t for t, _ in got})
        shown = ", ".join(tags) if len(tags) <= 12 else ", ".join(tags[:12]) + ", …"
        print(f"{name}: all {len(got)} scalars match the log, {exact} bit for bit ({len(tags)} tags: {shown})")


if __name__ == "__main__":
    main()
