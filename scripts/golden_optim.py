"""Golden numbers for the optimizer tests (`cargo test --lib optim`).

Implements the math of docs/optimizers.md directly in float64 numpy (a full SVD wherever a check
is "vs the SVD"), writes seeded inputs and expected outputs to
tests/fixtures/optim_golden.npz (float32) and prints a summary of every expected array; the Rust
tests load the same file and paste this printout next to the checks.

Run from the repo root:  .venv/bin/python scripts/golden_optim.py
"""

import os

import numpy as np

OUT = os.path.join("tests", "fixtures", "optim_golden.npz")
A, B, C = 3.4445, -4.7750, 2.0315
F = {}


def put(name, arr):
    arr = np.asarray(arr, dtype=np.float64)
    F[name] = np.ascontiguousarray(arr.astype(np.float32))  # candle reads C order only
    flat = arr.ravel()
    print(f"{name:28s} shape={str(arr.shape):10s} sum={flat.sum(): .9e} first={flat[0]: .9e}")


def ns5(u, steps=5):
    x = u / (np.linalg.norm(u) + 1e-7)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        a = x @ x.T
        x = A * x + (B * a + C * a @ a) @ x
    return x.T if tall else x


def msgn(u):
    p, _, qt = np.linalg.svd(u, full_matrices=False)
    return p @ qt


def muon_direction(name, u, scale):
    r, c = u.shape
    if scale == "record4" and name.endswith("attn.c_attn.weight") and r == 3 * c:
        return np.concatenate([ns5(u[k * c:(k + 1) * c]) * np.sqrt(c) for k in range(3)], 0)
    s = {"record4": np.sqrt(max(r, c)), "original": np.sqrt(max(1.0, r / c)),
         "moonlight": 0.2 * np.sqrt(max(r, c))}[scale]
    return ns5(u) * s


def f32(x):
    # Inputs are stored in f32; compute references from exactly those values.
    return np.asarray(x, dtype=np.float32).astype(np.float64)


rng = np.random.default_rng(20241011)

# --- Newton–Schulz vs SVD ---------------------------------------------------------------
u = f32(rng.standard_normal((20, 12)))
put("ns.u", u)
o = ns5(u)
put("ns.out", o)
p, s, qt = np.linalg.svd(u, full_matrices=False)
put("ns.p", p)
put("ns.q", qt.T)
sv = np.linalg.svd(o, compute_uv=False)
print(f"# NS5 singular values in [{sv.min():.4f}, {sv.max():.4f}]; ||NS5 - msgn||_F/||msgn||_F = "
      f"{np.linalg.norm(o - msgn(u)) / np.linalg.norm(msgn(u)):.4f}")

# --- Muon: two steps, momentum + Nesterov, QKV split, record-4 scale, wd ----------------------
c = 8
shapes = {"transformer.h.0.attn.c_attn.weight": (3 * c, c), "transformer.h.0.attn.c_proj.weight": (c, c),
          "transformer.h.0.mlp.c_fc.weight": (4 * c, c), "transformer.h.0.mlp.c_proj.weight": (c, 4 * c)}
mu, lr, wd = 0.95, 0.1, 0.01
for scale in ["record4", "original"]:
    for name, shp in shapes.items():
        w = f32(rng.standard_normal(shp) * 0.1)
        g1, g2 = f32(rng.standard_normal(shp)), f32(rng.standard_normal(shp))
        put(f"muon.{scale}.{name}.w0", w)
        put(f"muon.{scale}.{name}.g1", g1)
        put(f"muon.{scale}.{name}.g2", g2)
        buf = np.zeros(shp)
        for g in (g1, g2):
            buf = mu * buf + g
            upd = g + mu * buf
            w = w * (1 - lr * wd) - lr * muon_direction(name, upd, scale)
        put(f"muon.{scale}.{name}.w2", w)

# --- AdamW: two steps, bias correction, decoupled decay ---------------------------------------
b1, b2, eps, lr, wd = 0.9, 0.95, 1e-8, 0.01, 0.1
for name in ["transformer.wte.weight", "transformer.h.0.mlp.c_fc.weight"]:
    w = f32(rng.standard_normal((6, 4)))
    put(f"adamw.{name}.w0", w)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t in (1, 2):
        g = f32(rng.standard_normal((6, 4)))
        put(f"adamw.{name}.g{t}", g)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mh, vh = m / (1 - b1 ** t), v / (1 - b2 ** t)
        w = w * (1 - lr * wd) - lr * mh / (np.sqrt(vh) + eps)
        put(f"adamw.{name}.w{t}", w)

# --- Newton-Muon: statistics, EMA, ridge, Cholesky inverse, block-diagonal c_proj, one step ---
alpha, ridge, init = 0.05, 0.2, 0.001
nm = {"transformer.h.0.attn.c_attn.weight": (3 * c, c), "transformer.h.0.mlp.c_proj.weight": (c, 4 * c)}
lr = 0.1
for name, shp in nm.items():
    w = f32(rng.standard_normal(shp) * 0.1)
    g = f32(rng.standard_normal(shp))
    xs = [f32(rng.standard_normal((16, shp[1])) * (1 + np.arange(shp[1]) / 8)) for _ in range(2)]
    put(f"nm.{name}.w0", w)
    put(f"nm.{name}.g", g)
    put(f"nm.{name}.x0", xs[0])
    put(f"nm.{name}.x1", xs[1])
    nb = shp[1] // c
    gp = np.zeros(shp)
    for j in range(nb):
        cs = [x[:, j * c:(j + 1) * c].T @ x[:, j * c:(j + 1) * c] / x.shape[0] for x in xs]
        s = (1 - alpha) * init * np.eye(c) + alpha * (cs[0] + cs[1]) / 2
        k = s + (ridge * np.trace(s) / c + 1e-8) * np.eye(c)
        inv = np.linalg.inv(k)
        put(f"nm.{name}.inv{j}", inv)
        gp[:, j * c:(j + 1) * c] = g[:, j * c:(j + 1) * c] @ inv
    # First step: buffer = G·K⁻¹, Nesterov direction (1 + μ)·G·K⁻¹.
    w1 = w - lr * muon_direction(name, gp + 0.95 * gp, "record4")
    put(f"nm.{name}.w1", w1)

# Exact statistics on a linear least-squares layer: ema 1, ridge 0, no momentum.
w = f32(rng.standard_normal((8, 12)) * 0.3)
z = f32(rng.standard_normal((40, 12)) @ (np.eye(12) + 0.3 * rng.standard_normal((12, 12))))
y = f32(rng.standard_normal((40, 8)))
put("ls.w0", w)
put("ls.x", z)
put("ls.y", y)
grad = f32((z @ w.T - y).T @ z / z.shape[0])  # d/dW of 0.5·mean‖W·z − y‖², stored as the f32 input
put("ls.g", grad)
print(f"# least squares: cond(ZZᵀ) = {np.linalg.cond(z.T @ z):.1f}")
exact = msgn(grad @ np.linalg.inv(z.T @ z))
put("ls.msgn", exact)
ns_pre = ns5(grad @ np.linalg.inv(z.T @ z / z.shape[0] + 1e-8 * np.eye(12)))
put("ls.ns5", ns_pre)
cos = (ns_pre * exact).sum() / np.linalg.norm(ns_pre) / np.linalg.norm(exact)
print(f"# least squares: cos(NS5(G·K⁻¹), msgn(G·(ZZᵀ)⁻¹)) = {cos:.6f}")

# --- Neon: top triplets vs full SVD; F* with the closed-form τ --------------------------------
def with_spectrum(m, n, sig):
    p, _ = np.linalg.qr(rng.standard_normal((m, len(sig))))
    q, _ = np.linalg.qr(rng.standard_normal((n, len(sig))))
    return (p * sig) @ q.T


mats = {"rand": f32(rng.standard_normal((24, 16))),
        "illcond": f32(with_spectrum(24, 16, 10.0 ** -np.linspace(0, 6, 16)))}
for key, mat in mats.items():
    put(f"neon.{key}.m", mat)
    p, s, qt = np.linalg.svd(mat, full_matrices=False)
    put(f"neon.{key}.s", s)
    put(f"neon.{key}.u1", p[:, 0])
    put(f"neon.{key}.v1", qt[0])
put("neon.perturb", f32(rng.standard_normal((24, 16)) * 0.05))

sig = np.array([5.0, 4.0, 3.5, 3.0, 1.0, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.0, 0.0, 0.0])
fm = f32(with_spectrum(20, 14, sig[:14]))
put("fstar.m", fm)
p, s, qt = np.linalg.svd(fm, full_matrices=False)
# τ from the full spectrum by the closed form, checked against Σ[σ − τ]₊ = τ.
ks = [k for k in range(1, len(s) + 1) if s[k - 1] > s[:k].sum() / (k + 1)]
kk = max(ks)
tau = s[:kk].sum() / (kk + 1)
assert abs(np.maximum(s - tau, 0).sum() - tau) < 1e-12
print(f"# F*: k = {kk}, tau = {tau:.9f}")
put("fstar.tau", [tau, kk])
put("fstar.dir", (p * np.maximum(s - tau, 0)) @ qt)

# One Neon (LMO) step on c_fc-shaped weights, two steps so momentum matters.
w = f32(rng.standard_normal((32, 8)) * 0.1)
g1, g2 = f32(rng.standard_normal((32, 8))), f32(rng.standard_normal((32, 8)))
put("neonstep.w0", w)
put("neonstep.g1", g1)
put("neonstep.g2", g2)
buf = np.zeros_like(w)
for g in (g1, g2):
    buf = 0.95 * buf + g
    upd = g + 0.95 * buf
    p, s, qt = np.linalg.svd(upd, full_matrices=False)
    w = w - 0.1 * np.sqrt(32) * np.outer(p[:, 0], qt[0])
put("neonstep.w2", w)

# The same two steps in the "sigma" form: δW = −lr·σ₁·u₁v₁ᵀ.
w = f32(F["neonstep.w0"])
buf = np.zeros_like(w)
for g in (g1, g2):
    buf = 0.95 * buf + g
    upd = g + 0.95 * buf
    p, s, qt = np.linalg.svd(upd, full_matrices=False)
    w = w - 0.1 * s[0] * np.outer(p[:, 0], qt[0])
put("neonsigma.w2", w)

os.makedirs(os.path.dirname(OUT), exist_ok=True)
np.savez(OUT, **F)
print(f"# wrote {OUT} ({len(F)} arrays)")
