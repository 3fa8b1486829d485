"""Median gradient diagnostics over the matrices of each run, at a few steps: the table in
docs/diagnostics.md. Reads the `diag` records of each run's log.jsonl (docs/run-format.md).

    python3 scripts/diag_table.py RUN_DIR [RUN_DIR ...] [--steps 10,50,100] [--fields F,F]

Prints a Markdown table: one row per run and step, the median of each field over the run's
reported matrices (q, k and v counted apart) at that step. Standard library only.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path


def diag_records(run):
    out = {}
    with open(Path(run) / "log.jsonl") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if rec.get("kind") == "diag":
                out[rec["step"]] = rec["layers"]
    return out


def optim_of(run):
    summary = Path(run) / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text()).get("optim", Path(run).name)
    return Path(run).name


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--steps", default="10,50,100")
    p.add_argument("--fields", default="nuc_fro_ratio,stable_rank")
    a = p.parse_args()
    steps = [int(s) for s in a.steps.split(",")]
    fields = a.fields.split(",")
    print("| run | optimizer | step | " + " | ".join(f"median {f}" for f in fields) + " | matrices |")
    print("|---|---|---|" + "---|" * len(fields) + "---|")
    for run in a.runs:
        recs = diag_records(run)
        if not recs:
            sys.exit(f"{run}: no diag records in log.jsonl (train.diagnostics_every = 0?)")
        for step in steps:
            layers = recs.get(step)
            if layers is None:
                sys.exit(f"{run}: no diag record at step {step} (have {sorted(recs)})")
            cells = []
            for f in fields:
                vals = [l[f] for l in layers.values() if l.get(f) is not None]
                cells.append(f"{statistics.median(vals):.4g}" if vals else "–")
            print(f"| {Path(run).name} | {optim_of(run)} | {step} | " + " | ".join(cells) + f" | {len(layers)} |")


if __name__ == "__main__":
    main()
