"""Golden numbers for src/report/stats.rs (Welch's t-test, Student-t CDF, incomplete beta,
sample std, the Track-3 margins), computed with scipy/numpy.

Run from the repo root:  .venv/bin/python scripts/golden_stats.py
The printed output is pasted next to the Rust tests in src/report/tests.rs.
The sample vectors are the final val losses / steps-to-target of the hand-made fixture runs in
tests/fixtures/runs/ (muon_s0..2, adamw_s0..1) plus a few synthetic ones.
"""
import math

import numpy as np
from scipy import special, stats

# Final val losses (last val record of each log.jsonl) and steps to target 3.28.
muon_loss = [3.10, 3.12, 3.09]
adamw_loss = [3.35, 3.31]
muon_steps = [150.0, 200.0, 150.0]
other_steps = [100.0, 150.0, 125.0, 175.0]
TARGET = 3.28


def show(name, x):
    print(f"{name} = {x!r}")


show("muon_loss mean", float(np.mean(muon_loss)))
show("muon_loss std(ddof=1)", float(np.std(muon_loss, ddof=1)))
show("adamw_loss mean", float(np.mean(adamw_loss)))
show("adamw_loss std(ddof=1)", float(np.std(adamw_loss, ddof=1)))
show("muon_steps mean", float(np.mean(muon_steps)))
show("muon_steps std(ddof=1)", float(np.std(muon_steps, ddof=1)))
# Track-3 acceptance margin (src/report/stats.rs, `track3_margin`): (target - mean) * sqrt(n) >= 0.004.
show("muon track3 margin", (TARGET - float(np.mean(muon_loss))) * math.sqrt(len(muon_loss)))
show("adamw track3 margin", (TARGET - float(np.mean(adamw_loss))) * math.sqrt(len(adamw_loss)))

# Track-3 pairwise rule (src/report/stats.rs, `track3_pairwise_margin`): a better than b when
# ((loss_b - loss_a) + 0.0045 * (steps_b - steps_a) / 100) / sqrt(1/n_a + 1/n_b) >= 0.004.
# The first two are the worked examples of modded-nanogpt's records/track_3_optimization/README.md
# (result #13 vs #8: 0.0027; #12 vs #6: 0.00648), the third the fixture groups at equal length.
for name, (la, sa, na), (lb, sb, nb) in [
    ("track3 pairwise #13 vs #8", (3.2785, 3000.0, 16), (3.2778, 3040.0, 10)),
    ("track3 pairwise #12 vs #6", (3.2792, 3200.0, 20), (3.2790, 3250.0, 20)),
    ("track3 pairwise muon vs adamw", (float(np.mean(muon_loss)), 200.0, 3), (float(np.mean(adamw_loss)), 200.0, 2)),
]:
    margin = ((lb - la) + 0.0045 * (sb - sa) / 100.0) / np.sqrt(1.0 / na + 1.0 / nb)
    print(f"{name} = {float(margin)!r}")

for name, a, b in [
    ("welch loss muon vs adamw", muon_loss, adamw_loss),
    ("welch steps muon vs other", muon_steps, other_steps),
    ("welch close", [1.0, 2.0, 3.0, 4.0], [1.5, 2.5, 2.0, 4.5, 3.0]),
]:
    r = stats.ttest_ind(a, b, equal_var=False)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    print(f"{name}: t = {float(r.statistic)!r} df = {float(df)!r} p = {float(r.pvalue)!r}")

for t, df in [(0.0, 3.0), (1.0, 1.0), (-2.5, 4.0), (2.0, 2.7), (10.0, 1.3), (0.3, 250.0)]:
    print(f"t.cdf({t}, {df}) = {float(stats.t.cdf(t, df))!r}")

for a, b, x in [(0.5, 0.5, 0.3), (2.0, 3.0, 0.4), (1.35, 0.5, 0.9), (10.0, 0.5, 0.999)]:
    print(f"betainc({a}, {b}, {x}) = {float(special.betainc(a, b, x))!r}")

for x in [0.5, 1.0, 3.7, 10.0, 125.5]:
    print(f"lgamma({x}) = {float(special.gammaln(x))!r}")
