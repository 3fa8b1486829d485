"""Track 3 of modded-nanogpt (the optimization track) as its scripts train, for golden numbers.

Written by reading three scripts of KellerJordan/modded-nanogpt (records/track_3_optimization/)
line by line; line numbers below are theirs:
  B  = train_gpt_simple.py, the tuned baseline (result #36): AdamW + Muon
  NM = results/20260505_newton_muon/train_gpt_simple_newton_muon.py (result #15): Muon with
       Newton-Muon's right preconditioner and per-family learning rates
  A2 = results/a63a68d1-24aa-4a22-af9a-224e43209ea4.txt (result #2), the script that precedes the
       log's first `=====` line: AdamW on every matrix, a linear warmup on every group
The three share B's model; A2 only rewrites the gained RMSNorm (same numbers in fp32) and its
init. This module adds the generator, the three optimizer setups, the schedule, the validation
cadence and a train loop that emulates W ranks in one process.

Runs on the CPU in fp32 (no torch.compile). What the scripts do differently on their GPUs:
- The embedding is bf16 (`nn.Embedding(...).bfloat16()`, B:144, NM:164, A2 likewise). Since every
  later op casts its weights to the input's dtype (B:65, :72) and the residual adds stay in that
  dtype, the GPU runs carry bf16 activations from the embedding to the head (`.float()` only at
  the logits, B:154); the fp32 parameters are master weights. Here the embedding is fp32, so the
  whole forward is fp32.
- Newton-Schulz runs in bf16 (B:165) inside a torch.compile'd `muon_update` (B:182). `ns_track3`
  takes the dtype; the golden runs use fp32. In bf16 it rounds as eager PyTorch does, op by op
  (bit-identical to B's function run eagerly); compiled, the same function rounds differently
  (compiled by inductor on the CPU, most elements of a 64×64 result differ from eager by a few
  bf16 ulps), so no eager form reproduces a compiled GPU step bit for bit.
- The model is compiled (B:254): the GPU's generated kernels may fuse pointwise ops and round
  fewer times than eager PyTorch, which rounds after each op.
"""

import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from record4_ref import read_shard  # noqa: E402  (the same .bin format, B:27-37)

NS_COEFFS = (2.0, -1.5, 0.5)  # B:172, NM:211: the cubic iteration, not record 4's quintic
NS_STEPS = 12  # B:173
NS_EPS = 1e-7  # B:170
SOFTCAP = 15.0  # B:155
ATTN_SCALE = 0.12  # B:110
ROPE_MIN_FREQ = 1.0 / 1024  # B:78


# --------------------------------------------------------------------------------------------
# Data (B:39-52; NM:39-52 and A2 identical)
# --------------------------------------------------------------------------------------------


class Track3Generator:
    """`distributed_data_generator` for all W ranks at once. The ranks share one position `pos`;
    each step reads `batch_tokens` tokens (+1 for the targets) starting at `pos`, rank r the
    slice `[pos + r·local, pos + (r+1)·local + 1)` with local = batch_tokens / W. There is no
    repeated first batch (unlike record 4's loader)."""

    def __init__(self, files, batch_tokens, world, seq_len):
        assert batch_tokens % world == 0  # B:41
        self.files = sorted(files)  # B:40
        self.batch, self.world, self.seq_len = batch_tokens, world, seq_len
        self.local = batch_tokens // world
        assert self.local % seq_len == 0
        self.next_file = 0
        self.tokens, self.pos = self._load(), 0

    def _load(self):
        if self.next_file >= len(self.files):
            # B:47 calls next() on an exhausted iterator: StopIteration ends the run; no wrap.
            raise StopIteration(f"the generator has read all {len(self.files)} shards")
        tokens = read_shard(self.files[self.next_file])
        self.next_file += 1
        return tokens

    def next(self):
        """One step: a list over ranks of (inputs, targets), int64 of shape (local/T, T)."""
        # B:46: checked before every read, and with `>=`: a shard must hold MORE than
        # pos + batch + 1 tokens, so its last token is never read as a target, and a shard of
        # at most batch + 1 tokens is skipped (the first one included). A fresh shard is not
        # checked again (B:47-48): one shorter than batch + 1 makes the last ranks read short
        # slices and fail; this raises instead.
        if self.pos + self.batch + 1 >= len(self.tokens):
            self.tokens, self.pos = self._load(), 0
            if self.batch + 1 > len(self.tokens):
                name = self.files[self.next_file - 1]
                raise ValueError(f"{name}: {len(self.tokens)} tokens, a step reads {self.batch + 1}")
        out = []
        for r in range(self.world):
            start = self.pos + r * self.local
            buf = torch.from_numpy(self.tokens[start:start + self.local + 1].astype("int64"))
            out.append((buf[:-1].view(-1, self.seq_len), buf[1:].view(-1, self.seq_len)))
        self.pos += self.batch  # B:51
        return out


# --------------------------------------------------------------------------------------------
# Model (B:59-156)
# --------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """B:59-65: F.rms_norm with learnable `gains` and eps=None, which PyTorch takes as
    torch.finfo(fp32).eps = 2^-23 (also for bf16 input: it is the opmath type's eps):
    x · rsqrt(mean(x²) + 2^-23) · gains. A2:71-77 computes (rms_norm(x.float()) · gains); in fp32
    the two are bit-identical."""

    def __init__(self, dim):
        super().__init__()
        self.gains = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.size(-1),), weight=self.gains)


class Linear(nn.Linear):
    """B:67-72: every Linear of the model has a bias."""

    def __init__(self, fan_in, fan_out):
        super().__init__(fan_in, fan_out, bias=True)


def rotary_freqs(head_dim):
    # B:78-79: half-truncated RoPE. hd/4 frequencies (1/1024)^linspace(0, 1, hd/4) in fp32
    # (torch.linspace's fp32 points, then pow in fp32), then hd/4 zeros: the second quarter of
    # the pairs does not rotate (cos 1, sin 0).
    f = ROPE_MIN_FREQ ** torch.linspace(0, 1, steps=head_dim // 4, dtype=torch.float32)
    return torch.cat([f, torch.zeros(head_dim // 4)])


def apply_rotary(x, freqs):
    """B:81-88 on x of shape (B, T, H, hd), in fp32. The halves x1 = x[..., :hd/2] and
    x2 = x[..., hd/2:] pair up: y1 = x1·cos + x2·sin, y2 = x1·(−sin) + x2·cos."""
    t = torch.arange(x.size(1), dtype=torch.float32)
    theta = torch.outer(t, freqs)[None, :, None, :]
    cos, sin = theta.cos(), theta.sin()
    x1, x2 = x.float().chunk(2, dim=-1)
    y1 = x1 * cos + x2 * sin
    y2 = x1 * (-sin) + x2 * cos
    return torch.cat((y1, y2), dim=3).type_as(x)


class Attention(nn.Module):
    """B:90-113. H = width // head_dim heads (B's default head_dim is 128: 6 heads at width 768,
    B:91-95). q and k get a weightless RMSNorm per head (eps 2^-23) BEFORE the rotary (B:107-108);
    the softmax scale is 0.12, not 1/sqrt(hd) (B:110)."""

    def __init__(self, dim, head_dim):
        super().__init__()
        self.heads, self.head_dim = dim // head_dim, head_dim
        hdim = self.heads * head_dim
        self.q, self.k, self.v = Linear(dim, hdim), Linear(dim, hdim), Linear(dim, hdim)
        self.proj = Linear(hdim, dim)
        # B registers this as a persistent buffer (B:79): B's state_dicts also carry
        # blocks.{i}.attn.rotary.angular_freq. It is a constant; it is not saved here.
        self.register_buffer("freqs", rotary_freqs(head_dim), persistent=False)
        self.taps = None  # a dict to receive q and k after their RMSNorm (golden_track3_model.py)

    def forward(self, x):
        B, T = x.shape[:2]
        shape = (B, T, self.heads, self.head_dim)
        q, k, v = self.q(x).view(shape), self.k(x).view(shape), self.v(x).view(shape)
        q, k = F.rms_norm(q, (self.head_dim,)), F.rms_norm(k, (self.head_dim,))
        if self.taps is not None:
            q.retain_grad()
            k.retain_grad()
            self.taps["q"], self.taps["k"] = q, k
        q, k = apply_rotary(q, self.freqs), apply_rotary(k, self.freqs)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           scale=ATTN_SCALE, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, self.heads * self.head_dim))


class MLP(nn.Module):
    """B:115-126: width → 4·width → width, ReLU² between."""

    def __init__(self, dim):
        super().__init__()
        self.fc, self.proj = Linear(dim, 4 * dim), Linear(4 * dim, dim)

    def forward(self, x):
        return self.proj(self.fc(x).relu().square())


class Block(nn.Module):
    # B:128-139; registration order attn, mlp, norm1, norm2 gives B's named_parameters order.
    def __init__(self, dim, head_dim):
        super().__init__()
        self.attn = Attention(dim, head_dim)
        self.mlp = MLP(dim)
        self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Track3GPT(nn.Module):
    """B:141-156 with B's parameter names: embed.weight, blocks.{i}.attn.{q,k,v,proj}.{weight,bias},
    blocks.{i}.mlp.{fc,proj}.{weight,bias}, blocks.{i}.norm{1,2}.gains, proj.{weight,bias} (the
    untied head), norm{1,2}.gains (norm1 right after the embedding, norm2 before the head).
    `seq_len` is the generator's sequence length; the model itself takes any T."""

    def __init__(self, vocab, layers, width, head_dim=128, seq_len=1024):
        super().__init__()
        self.vocab, self.width, self.head_dim, self.seq_len = vocab, width, head_dim, seq_len
        # fp32 on purpose: B makes this table bf16 (B:144), which makes the whole GPU forward
        # bf16 (see the module docstring); the golden numbers are fp32 throughout.
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList([Block(width, head_dim) for _ in range(layers)])
        self.proj = Linear(width, vocab)
        self.norm1, self.norm2 = RMSNorm(width), RMSNorm(width)

    def logits(self, inputs):
        x = self.norm1(self.embed(inputs))
        for block in self.blocks:
            x = block(x)
        z = self.proj(self.norm2(x)).float()
        # B:155, evaluated left to right: (15·z) · rsqrt(z² + 225).
        return SOFTCAP * z * (z.square() + SOFTCAP ** 2).rsqrt()

    def forward(self, inputs, targets):
        # B:156: the SUM of the token losses; B never divides by the token count (the gradients
        # of a step are sums over all its tokens: micro-batches and ranks).
        z = self.logits(inputs)
        return F.cross_entropy(z.view(targets.numel(), -1), targets.view(-1), reduction="sum")


def init_b(model):
    """B:270-284 (NM:426-440), in named_parameters order from the current torch RNG: weights with
    "proj" in the name zero (the head and both residual projections), the embedding N(0, 1), every
    other weight N(0, 0.33/fan_in) (std sqrt(0.33)/sqrt(fan_in)), biases 0, gains 1."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                if "proj" in name:
                    p.zero_()
                elif "embed" in name:
                    p.normal_()
                else:
                    p.normal_(std=0.33 ** 0.5 / p.size(-1) ** 0.5)
            elif name.endswith("bias"):
                p.zero_()
            elif name.endswith("gains"):
                # N(1, 0) is exactly 1 but still draws from the RNG (B:282): with fill_(1) every
                # later tensor of a seeded init would differ from B's.
                p.normal_(mean=1.0, std=0.0)
            else:
                raise ValueError(f"no init rule for {name}")


def init_a2(model):
    """A2:277-280: PyTorch's construction-time defaults (embedding N(0, 1), Linear weights and biases
    U(±1/sqrt(fan_in)), gains 1), then every parameter with "proj" in its name zeroed, biases
    included. Call right after construction."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "proj" in name:
                p.zero_()


# --------------------------------------------------------------------------------------------
# Newton-Schulz (B:163-180, NM:202-219)
# --------------------------------------------------------------------------------------------


def ns_track3(G, steps=NS_STEPS, dtype=torch.bfloat16):
    """B's orthogonalisation as eager PyTorch runs it op by op in `dtype` (bf16 in the scripts).

    The result stays in `dtype` (B:180 returns the bf16 X; the caller scales it in place in bf16,
    B:187, and adds it to the fp32 parameter). Per iteration, with (a, b, c) = (2, −1.5, 0.5):
        A = X·Xᵀ;  B = b·A + (c·A)·A;  X = a·X + B·X
    (`c * A @ A` in B:175 parses as (c·A)@A). In bf16 each op rounds once: 2·X and 0.5·A are
    exact, −1.5·A, the two sums and the matmuls (fp32 accumulation) round. The scalars are Python
    numbers, which CPU and CUDA both apply in fp32 without rounding them to bf16 first (unlike
    `add_(.., alpha=)` on the CPU, see record4_ref.ns_nm1). The norm is taken in `dtype` too:
    ‖X‖_F is accumulated in fp32, rounded to `dtype`, then + 1e-7 rounds again (in bf16 the
    1e-7 is lost unless ‖X‖ is tiny)."""
    a, b, c = NS_COEFFS
    X = G.to(dtype)
    tall = G.size(-2) > G.size(-1)  # B:166: iterate on the wide orientation
    if tall:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + NS_EPS)
    for _ in range(steps):
        A = X @ X.mT
        Bm = (b * A) + ((c * A) @ A)
        X = (a * X) + (Bm @ X)
    return X.mT if tall else X


# --------------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------------


class AdamW:
    """torch.optim.AdamW's algorithm, written out on fp32 tensors, over groups
    {params, lr, wd, initial_lr, warmup}. The scripts use `fused=True` (B:290, NM:446, A2:286,
    :289), one kernel computing the same formula; its intermediate roundings differ from these
    op-by-op ones in the last bit (the CUDA kernel evaluates several products in double)."""

    def __init__(self, groups, betas, eps):
        self.groups, self.betas, self.eps = groups, betas, eps
        self.state = {}

    @torch.no_grad()
    def step(self):
        b1, b2 = self.betas
        for g in self.groups:
            for p in g["params"]:
                st = self.state.setdefault(p, dict(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p)))
                st["t"] += 1
                t, m, v, grad = st["t"], st["m"], st["v"], p.grad
                p.mul_(1 - g["lr"] * g["wd"])  # decoupled, with the scheduled lr
                m.lerp_(grad, 1 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
                denom = (v.sqrt() / math.sqrt(bc2)).add_(self.eps)
                p.addcdiv_(m, denom, value=-g["lr"] / bc1)


class Muon:
    """B:183-213 (NM:222-368) over groups {params, lr, wd, ...}; per parameter:
        m ← lerp(m, g, 1 − μ);  u ← lerp(g, m, μ)           (Nesterov, B:184-185)
        u ← NS(u) · sqrt(max(1, rows/cols))                  (B:186-187)
        p ← p · (1 − lr·wd);  p ← p − lr·u                   (B:211-212, the scheduled lr)
    On the CPU PyTorch's lerp is one FMA per element (checked bitwise): w < 0.5:
    fma(w, end − self, self), else fma(w − 1, end − self, end), with w = fl32(1 − μ) = 0.05 and
    fl32(μ) = 0.95; CUDA's kernel uses the same two branches. The groups
    differ only in lr and wd (NM:454-457); μ is 0.95 everywhere. Which rank updates which
    matrix (B:203-213) does not change any number. `precond` is NM's preconditioner or None."""

    def __init__(self, groups, mu=0.95, ns_steps=NS_STEPS, ns_dtype=torch.float32, precond=None):
        self.groups, self.mu, self.ns_steps, self.ns_dtype = groups, mu, ns_steps, ns_dtype
        self.precond = precond
        self.momentum = {}

    @torch.no_grad()
    def step(self, step):
        if self.precond is not None:
            self.precond.before_muon(step)  # NM:348-351
        for g in self.groups:
            for p in g["params"]:
                grad = p.grad
                m = self.momentum.setdefault(p, torch.zeros_like(p))
                m.lerp_(grad, 1 - self.mu)
                u = grad.lerp_(m, self.mu)
                u = ns_track3(u, self.ns_steps, self.ns_dtype)
                u *= max(1, grad.size(-2) / grad.size(-1)) ** 0.5
                p.mul_(1 - g["lr"] * g["wd"])
                p.add_(u, alpha=-g["lr"])


class NewtonPreconditioner:
    """NM's right preconditioner (NM:54-64, :178-195, :255-344).

    Statistics: on steps with (step + 1) % refresh == 0 only (NM:293-294, :524), forward hooks on
    attn.q (its input is shared by q, k and v), attn.proj, mlp.fc and mlp.proj add xᵀx / n (fp32,
    n = the micro-batch's tokens) per micro-forward to an accumulator and 1 to its count
    (NM:56-64); mlp.proj's input is split into 4 column blocks of `width`, each with its own
    covariance (NM:61-63). At that step's optimizer step (NM:296-325), on one batch of all
    covariances in NM's order: the sum over ranks (NM:304-305), K = accum / max(count, 1),
    cov ← lerp(cov, K, 0.05) where count > 0 (NM:309-311), r = 0.2·tr(cov)/d + 1e-8 added to the
    diagonal for the Cholesky factorisation and subtracted again (NM:313-317: cov's diagonal
    becomes fl(fl(c + r) − r), which can move it by an ulp, and that cov is what the next refresh
    starts from), inv = cholesky_inverse(L) (NM:318). cov starts at 0.001·I (NM:287). Until the
    first refresh, gradients are NOT preconditioned (NM:329-330); after it, every step
    G ← G·inv, mlp.proj block by block (NM:339-344)."""

    def __init__(self, model, refresh, world, ema=0.05, init=0.001, ridge=0.2, eps=1e-8):
        self.refresh, self.world, self.ema, self.ridge, self.eps = refresh, world, ema, ridge, eps
        d = model.width
        assert model.blocks[0].attn.heads * model.head_dim == d, "NM stacks all covariances as d×d"
        # NM's order of the covariance batch: Muon's groups (q/k/v, attn.proj, mlp.fc, mlp.proj;
        # NM:454-457), blocks in order, each statistic at its first parameter (NM:258-267).
        self.stats = []  # (name, hooked module, number of d×d blocks)
        for fam in ("attn.q", "attn.proj", "mlp.fc", "mlp.proj"):
            for i in range(len(model.blocks)):
                name = f"blocks.{i}.{fam}"
                self.stats.append((name, model.get_submodule(name), 4 if fam == "mlp.proj" else 1))
        n = sum(k for _, _, k in self.stats)
        self.cov = torch.eye(d).repeat(n, 1, 1) * init
        self.inv = torch.eye(d).repeat(n, 1, 1)
        self.offset, self.of_param = {}, {}
        i = 0
        for name, mod, k in self.stats:
            self.offset[name] = (i, k)
            i += k
        for i in range(len(model.blocks)):
            for leaf in ("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc", "mlp.proj"):
                stat = "attn.q" if leaf in ("attn.k", "attn.v") else leaf  # q, k, v share x (NM:182)
                self.of_param[model.get_parameter(f"blocks.{i}.{leaf}.weight")] = f"blocks.{i}.{stat}"
        self.has_inv, self.recording, self.rank = False, False, 0
        self._zero_accum()
        for name, mod, k in self.stats:
            mod.register_forward_hook(self._hook(name, k))

    def _zero_accum(self):
        d = self.cov.shape[-1]
        self.accum = [{name: (torch.zeros(k, d, d), 0) for name, _, k in self.stats}
                      for _ in range(self.world)]

    def _hook(self, name, k):
        def f(_mod, args, _out):
            if not self.recording:
                return
            with torch.no_grad():
                x = args[0].detach().flatten(0, -2).float()
                n, d = x.shape[0], self.cov.shape[-1]
                acc, count = self.accum[self.rank][name]
                if k == 1:
                    acc[0].add_(x.T @ x, alpha=1 / n)
                else:
                    xb = x.reshape(n, k, d).permute(1, 2, 0)  # (4, d, n)
                    acc.add_(torch.bmm(xb, xb.mT), alpha=1 / n)
                self.accum[self.rank][name] = (acc, count + 1)
        return f

    def due(self, step):
        return (step + 1) % self.refresh == 0

    def _refresh(self):
        d = self.cov.shape[-1]
        K = torch.cat([self.accum[0][name][0] for name, _, _ in self.stats])
        counts = [self.accum[0][name][1] for name, _, _ in self.stats]
        for r in range(1, self.world):  # all_reduce(SUM), NM:304-305
            K = K + torch.cat([self.accum[r][name][0] for name, _, _ in self.stats])
            counts = [c + self.accum[r][name][1] for c, (name, _, _) in zip(counts, self.stats)]
        per = torch.tensor([float(c) for c, (_, _, k) in zip(counts, self.stats) for _ in range(k)])
        K.div_(per.clamp_min(1).view(-1, 1, 1))
        self.cov.lerp_(K, (per > 0).float().view(-1, 1, 1) * self.ema)
        diag = self.cov.diagonal(dim1=-2, dim2=-1)
        reg = (diag.sum(-1) / d * self.ridge + self.eps).unsqueeze(-1)
        diag.add_(reg)
        L, info = torch.linalg.cholesky_ex(self.cov, upper=False, check_errors=False)
        diag.sub_(reg)
        # NM:319-320 means to fall back to I for a failed factorisation, but K[info != 0] is a
        # copy: the fallback never lands. No factorisation fails in the golden runs.
        assert not info.any(), "a Cholesky factorisation failed"
        self.inv = torch.cholesky_inverse(L, upper=False)
        self._zero_accum()
        self.has_inv = True

    @torch.no_grad()
    def before_muon(self, step):
        if self.due(step):
            self._refresh()
        if not self.has_inv:
            return
        for p, name in self.of_param.items():
            i, k = self.offset[name]
            if k == 1:
                p.grad.copy_(p.grad @ self.inv[i])
            else:
                d = self.inv.shape[-1]
                g = p.grad.view(p.size(0), k, d).permute(1, 0, 2)
                p.grad.copy_(torch.bmm(g, self.inv[i:i + k]).permute(1, 0, 2).reshape_as(p.grad))


# --------------------------------------------------------------------------------------------
# Schedule, validation cadence, the three setups
# --------------------------------------------------------------------------------------------


def eta(step, steps, cooldown_frac=0.7):
    """B:301-310: 1 for step/steps < 1 − cooldown, then linear to 0 at `steps` (never reached:
    the last step taken is steps − 1). Evaluated in double."""
    progress = step / steps
    assert 0 <= progress < 1
    return 1.0 if progress < 1 - cooldown_frac else (1 - progress) / cooldown_frac


def warmup_mult(step, warmup_steps):
    # A2:308-309: min(1, (step + 1) / warmup) on EVERY group of both optimizers (A2:296).
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def val_due_b(step, steps, every=125, every_late=25):
    # B:328-329 (NM:495-496): every 125 steps while step/steps < 0.9, every 25 after, and the last.
    return step == steps or step % (every if step / steps < 0.9 else every_late) == 0


def val_due_a2(step, steps, every=125):
    # A2:324: every 125 steps and the last; no late tightening.
    return step == steps or step % every == 0


def _aux_groups(model, lrs, wd):
    """The auxiliary AdamW of all three (B:287-289, NM:443-445, A2:283-285), in this order: the
    embedding, the head's weight, then every parameter with ndim < 2 (all biases, the head's
    included, and all gains) in named_parameters order."""
    small = [p for p in model.parameters() if p.ndim < 2]
    return [dict(params=[model.embed.weight], lr=lrs[0], wd=wd),
            dict(params=[model.proj.weight], lr=lrs[1], wd=wd),
            dict(params=small, lr=lrs[2], wd=wd)]


def _block_matrices(model, suffixes):
    return [p for n, p in model.named_parameters()
            if n.startswith("blocks.") and p.ndim >= 2 and n.endswith(suffixes)]


def setup(case, model, cfg):
    """The optimizers of `case` ('muon36' | 'nm15' | 'adam2') and its validation rule.
    cfg: world, refresh (nm15), warmup (adam2), and optionally lr_scale (multiplies every lr),
    val_every and val_every_late (the cadence: 125 and 25 in the scripts).
    Returns (optimizers in step order, val_due(step, steps), precond or None)."""
    s = cfg.get("lr_scale", 1.0)
    every, late = cfg.get("val_every", 125), cfg.get("val_every_late", 25)
    all_mats = _block_matrices(model, ("weight",))
    precond = None
    if case == "muon36":  # B:287-292
        aux = AdamW(_aux_groups(model, (0.7 * s, 0.004 * s, 0.015 * s), 0.001), (0.8, 0.95), 1e-10)
        body = Muon([dict(params=all_mats, lr=0.025 * s, wd=0.05)])
        due = lambda st, n: val_due_b(st, n, every, late)  # noqa: E731
    elif case == "nm15":  # NM:443-459
        aux = AdamW(_aux_groups(model, (0.3 * s, 1 / 320 * s, 0.01 * s), 0.0), (0.8, 0.95), 1e-10)
        precond = NewtonPreconditioner(model, cfg["refresh"], cfg["world"])
        fams = [((".attn.q.weight", ".attn.k.weight", ".attn.v.weight"), 0.020, 0.025),
                ((".attn.proj.weight",), 0.025, 0.025),
                ((".mlp.fc.weight",), 0.030, 0.0375),
                ((".mlp.proj.weight",), 0.030, 0.025)]
        body = Muon([dict(params=_block_matrices(model, suf), lr=lr * s, wd=wd) for suf, lr, wd in fams],
                    precond=precond)
        due = lambda st, n: val_due_b(st, n, every, late)  # noqa: E731
    elif case == "adam2":  # A2:283-296
        aux = AdamW(_aux_groups(model, (0.3 * s, 1 / 320 * s, 0.01 * s), 0.0), (0.8, 0.95), 1e-10)
        body = AdamW([dict(params=all_mats, lr=0.0015 * s, wd=0.1)], (0.9, 0.95), 1e-10)
        for g in aux.groups + body.groups:
            g["warmup"] = cfg["warmup"]
        due = lambda st, n: val_due_a2(st, n, every)  # noqa: E731
    else:
        raise ValueError(f"unknown case {case}")
    for opt in (aux, body):
        for g in opt.groups:
            g["initial_lr"] = g["lr"]
            g.setdefault("warmup", 0)
    return [aux, body], due, precond


def set_lrs(optimizers, step, steps, cooldown_frac):
    # B:301-310 and A2:299-310: lr = initial_lr · warmup · eta, in double.
    e = eta(step, steps, cooldown_frac)
    for opt in optimizers:
        for g in opt.groups:
            g["lr"] = g["initial_lr"] * warmup_mult(step, g["warmup"]) * e


# --------------------------------------------------------------------------------------------
# Validation and the train loop
# --------------------------------------------------------------------------------------------


def validate(model, val_batches, mbs, val_tokens):
    """B:336-343: each rank sums the losses of its micro-batches of `mbs` sequences in fp32, the
    sums are all-reduced (SUM) and divided by val_tokens."""
    total = None
    with torch.no_grad():
        for x, y in val_batches:
            assert len(x) % mbs == 0
            s = 0
            for i in range(len(x) // mbs):
                s = s + model(x[i * mbs:(i + 1) * mbs], y[i * mbs:(i + 1) * mbs])
            total = s if total is None else total + s
    return (total / val_tokens).item()


def train(model, case, cfg, train_files, val_files, log):
    """The loop of B:325-367 (NM:492-538, A2:321-359) with W ranks emulated: each rank's
    micro-batches are backpropagated into its own gradients, which are then summed in rank order
    (the all-reduce, B:360-362), no division anywhere. cfg: T, world, batch_seqs (sequences per
    step, all ranks), mbs (sequences per micro-batch), steps, cooldown, val_tokens, and the
    setup's keys. Calls log(kind, step, value): 'val' at each validation (Σ CE / val_tokens) and
    'train' after each step (Σ CE over the step's tokens / its tokens; the scripts print none)."""
    T, W, mbs, steps = cfg["T"], cfg["world"], cfg["mbs"], cfg["steps"]
    optimizers, val_due, precond = setup(case, model, cfg)
    val_batches = Track3Generator(val_files, cfg["val_tokens"], W, T).next()  # B:251, once
    loader = Track3Generator(train_files, cfg["batch_seqs"] * T, W, T)
    params = list(model.parameters())
    for step in range(steps + 1):
        if val_due(step, steps):
            log("val", step, validate(model, val_batches, mbs, cfg["val_tokens"]))
        if step == steps:
            break
        ranks = loader.next()
        if precond is not None:
            precond.recording = precond.due(step)  # NM:524
        loss_sum, summed = None, None
        for r, (x, y) in enumerate(ranks):
            if precond is not None:
                precond.rank = r
            model.zero_grad(set_to_none=True)
            assert len(x) % mbs == 0
            for i in range(len(x) // mbs):
                loss = model(x[i * mbs:(i + 1) * mbs], y[i * mbs:(i + 1) * mbs])
                loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
                loss.backward()
            grads = [p.grad for p in params]
            summed = grads if summed is None else [a + b for a, b in zip(summed, grads)]
        for p, g in zip(params, summed):
            p.grad = g
        if precond is not None:
            precond.recording = False  # NM:529-530
        set_lrs(optimizers, step, steps, cfg["cooldown"])
        for opt in optimizers:  # the aux AdamW first, then the matrices' optimizer (B:365-366)
            if isinstance(opt, Muon):
                opt.step(step)
            else:
                opt.step()
        model.zero_grad(set_to_none=True)
        log("train", step + 1, (loss_sum / (cfg["batch_seqs"] * T)).item())
