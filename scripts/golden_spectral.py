"""Golden singular values and norms for src/optim/spectral.rs, from numpy's SVD in float64.

Run from the repo root:  .venv/bin/python scripts/golden_spectral.py
The printed output is pasted next to the Rust test (src/optim/tests/spectral.rs), which builds the
same matrices from the same formula: each entry is computed in float64 and rounded to float32 (the
trainer's gradients are fp32), and the SVD runs in float64 on those float32 values.
"""
import math

import numpy as np


def entry(i, j, s):
    """A smooth but generic pattern (incommensurate frequencies), shifted by the seed s."""
    return math.cos((i + 1) * 0.7548776662 * (j + 1) + 0.5698402910 * j * j + 1.3 * s) + 0.25 * math.sin(
        2.1 * i - 0.9 * j + s
    )


def matrix(rows, cols, s, row_period=None, col_decay=None):
    """rows x cols float32. row_period p repeats the first p rows (exact rank <= p); col_decay d
    multiplies column j by d**j (a graded spectrum)."""
    a = np.empty((rows, cols), dtype=np.float64)
    for i in range(rows):
        for j in range(cols):
            ii = i % row_period if row_period else i
            v = entry(ii, j, s)
            if col_decay:
                v *= col_decay**j
            a[i, j] = v
    return a.astype(np.float32)


CASES = [
    ("square", dict(rows=6, cols=6, s=0)),
    ("tall", dict(rows=9, cols=5, s=1)),
    ("wide", dict(rows=5, cols=9, s=2)),
    ("rank2", dict(rows=8, cols=6, s=3, row_period=2)),
    ("graded", dict(rows=7, cols=7, s=5, col_decay=0.1)),
    ("big", dict(rows=96, cols=64, s=4)),
]


def norms(sv):
    fro2 = float(np.sum(sv**2))
    nuc = float(np.sum(sv))
    spec = float(sv[0])
    return dict(
        fro=math.sqrt(fro2),
        nuc=nuc,
        spec=spec,
        stable_rank=fro2 / spec**2,
        nuc_fro_ratio=nuc**2 / fro2,
    )


for name, kw in CASES:
    a = matrix(**kw).astype(np.float64)
    sv = np.linalg.svd(a, compute_uv=False)
    print(f"{name} {kw}")
    shown = sv if len(sv) <= 9 else np.concatenate([sv[:3], sv[-1:]])
    label = "sigma" if len(sv) <= 9 else "sigma[0..3], sigma[last]"
    print(f"  {label} = [{', '.join(repr(float(x)) for x in shown)}]")
    for k, v in norms(sv).items():
        print(f"  {k} = {v!r}")


# Newton-Muon's preconditioner diagnostics (src/train/diagnostics.rs, `conditioning`): K =
# blockdiag(S_j + d_j I) with S_j = X_jᵀX_j/N (float32, as the optimizer stores it) and
# d_j = ridge·tr(S_j)/n + 1e-8 (src/optim/newton_muon.rs, `damping`).
def statistic(rows, cols, s):
    x = matrix(rows, cols, s).astype(np.float64)
    return (x.T @ x / rows).astype(np.float32)


def conditioning(blocks, ridge):
    lo, hi, ridge_trace, trace, dominated, total = math.inf, -math.inf, 0.0, 0.0, 0, 0
    for sj in blocks:
        sj = sj.astype(np.float64)
        n = sj.shape[0]
        d = ridge * float(np.trace(sj)) / n + 1e-8
        ev = np.linalg.eigvalsh(sj)
        lo, hi = min(lo, ev[0] + d), max(hi, ev[-1] + d)
        ridge_trace += n * d
        trace += float(np.sum(ev)) + n * d
        dominated += int(np.sum(ev < d))
        total += n
    return dict(k_cond=float(hi / lo), ridge_share=ridge_trace / trace, ridge_dominated=dominated / total)


full, low = statistic(10, 6, 6), statistic(3, 6, 7)
for name, blocks in [("precond one block (10x6 input)", [full]), ("precond two blocks (10x6, 3x6 inputs)", [full, low])]:
    print(name)
    for k, v in conditioning(blocks, 0.2).items():
        print(f"  {k} = {v!r}")
