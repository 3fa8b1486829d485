"""The training loop of modded-nanogpt record 4 and of Newton-Muon's NM-1, for golden numbers.

Written by reading the two scripts line by line:
  R  = KellerJordan/modded-nanogpt records/track_1_short/2024-10-10_Muon/train_gpt2.py
       (byte-identical to the script embedded in record 4's log, data/records/)
  NM = zhehangdu/Newton-Muon train_gpt_newton_muon_1.py (and its triton_kernels.py)
Line numbers below are theirs. The model is scripts/gpt_ref.py (record 4's architecture); this
module adds what the model test cannot see: the loader and its repeated first batch, the
optimizers, the schedule, which loss is logged, and Newton–Schulz in bf16 as each script rounds it.

Runs on the CPU in fp32 (no torch.compile, no autocast) unless a function says otherwise; W ranks
are emulated in one process, each with its own loader, as W processes of R would run them.

Where this differs from the scripts on purpose:
- NM applies its preconditioner with `torch.bmm(G, inv, out=G)` (NM:209, :221, :233). PyTorch does
  not support an output that aliases an input; on the CPU it returns a wrong product (even for
  inv = I), so running NM as written on the CPU trains on garbage. This module computes the
  intended G·K⁻¹, as speedrun does (docs/optimizers.md, "Newton-Muon").
- NM's fallback for a failed Cholesky, `K[bad].zero_()` (NM:397-398), writes to a copy (advanced
  indexing) and does nothing; no factorisation fails in the golden runs.
"""

import math

import numpy as np
import torch

NS_COEFFS = (3.4445, -4.7750, 2.0315)  # R:39, NM:71


def read_shard(path):
    # R:236-244: a 256 x int32 header [20240520, 1, ntok, ...], then ntok uint16 tokens.
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(256 * 4), dtype=np.int32)
        assert header[0] == 20240520 and header[1] == 1
        tokens = np.frombuffer(f.read(), dtype=np.uint16)
    assert len(tokens) == header[2]
    return tokens


class ShardLoader:
    """One process's DistributedDataLoader (R:246-291, NM:656-695)."""

    def __init__(self, files, B, T, rank, world):
        self.files, self.B, self.T, self.rank, self.world = sorted(files), B, T, rank, world
        for f in self.files:
            assert len(read_shard(f)) >= world * B * T + 1  # R:262
        self.reset()

    def reset(self):  # R:268-271
        self.shard = 0
        self.pos = self.rank * self.B * self.T
        self.tokens = read_shard(self.files[self.shard])

    def advance(self):  # R:273-276
        self.shard = (self.shard + 1) % len(self.files)
        self.pos = self.rank * self.B * self.T
        self.tokens = read_shard(self.files[self.shard])

    def next_batch(self):  # R:278-291
        B, T = self.B, self.T
        buf = torch.tensor(self.tokens[self.pos:self.pos + B * T + 1].astype(np.int64))
        x, y = buf[:-1].view(B, T), buf[1:].view(B, T)
        self.pos += B * T * self.world
        if self.pos + (B * T * self.world + 1) > len(self.tokens):
            self.advance()
        return x, y


def lr_mult(it, num_iterations, warmup_iters, warmdown_iters):
    # R:413-425 (get_lr); LambdaLR applies get_lr(s) to the step after s scheduler steps.
    assert it <= num_iterations
    if it < warmup_iters:
        return (it + 1) / warmup_iters
    if it < num_iterations - warmdown_iters:
        return 1.0
    return (num_iterations - it) / warmdown_iters


def ns_record4(G, steps, dtype=torch.float32, eps=1e-7):
    """R:38-44, as PyTorch runs it op by op in `dtype` (bf16 on the GPU)."""
    a, b, c = NS_COEFFS
    X = G.to(dtype) / (G.norm() + eps)
    if G.size(0) > G.size(1):
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = A @ X
        X = a * X + b * B + c * A @ B  # c * A @ B is (c * A) @ B
    if G.size(0) > G.size(1):
        X = X.T
    return X.to(G.dtype)


def _xxt(A):
    # triton_kernels.py XXT_kernel: an fp32 accumulator, rounded once to the output dtype.
    return (A.float() @ A.float().mT).to(A.dtype)


def _ba_plus_caa(A, alpha, beta):
    # triton_kernels.py ba_plus_cAA_kernel: acc = A·Aᵀ in fp32; acc *= alpha; acc += beta·A;
    # rounded once to A's dtype.
    acc = A.float() @ A.float().mT
    acc = acc * alpha
    acc = acc + A.float() * beta
    return acc.to(A.dtype)


def ns_nm1(G, steps, dtype=torch.float32, eps=1e-7):
    """NM:65-95 with its Triton kernels written as the fp32-accumulating ops they are."""
    a, b, c = NS_COEFFS
    X = G.to(dtype) / (G.norm() + eps)
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    X = X.contiguous()
    for _ in range(steps):
        A = _xxt(X)  # NM:87
        B = _ba_plus_caa(A, alpha=c, beta=b)  # NM:88
        C = B @ X  # NM:89, torch.mm(B, X, out=C)
        # NM:90, C.add_(X, alpha=a), as CUDA computes it: C + a·X in fp32 with a unrounded, one
        # rounding. (PyTorch's CPU kernel rounds alpha to bf16 first, which NM-1 never ran.)
        X = (C.float() + a * X.float()).to(C.dtype)
    if transposed:
        X = X.T
    return X.to(G.dtype)


class Muon:
    """R:51-101 (Muon.step), over the block matrices; `ns` is ns_record4 or ns_nm1."""

    def __init__(self, params, lr, momentum=0.95, nesterov=True, steps=5, ns=ns_record4):
        self.params, self.lr, self.momentum, self.nesterov, self.steps = list(params), lr, momentum, nesterov, steps
        self.ns = ns
        self.bufs = {}

    def step(self, lr_mult, grads=None):
        lr = self.lr * lr_mult
        for p in self.params:
            g = p.grad if grads is None else grads[p]
            buf = self.bufs.setdefault(p, torch.zeros_like(g))
            buf.mul_(self.momentum).add_(g)  # R:92
            if self.nesterov:
                g = g.add(buf, alpha=self.momentum)  # R:93-94
            if g.size(0) == 3 * g.size(1):  # R:95-97: the packed QKV, three blocks
                g = torch.cat([self.ns(g1, self.steps) for g1 in g.split(g.size(1))])
                scale = g.size(1) ** 0.5
            else:
                g = self.ns(g, self.steps)
                scale = max(g.size(0), g.size(1)) ** 0.5  # R:99-100
            p.data.add_(g, alpha=-lr * scale)  # R:101


class NM1Preconditioner:
    """NM's right-preconditioner (NM:97-448), the refresh phase included.

    Statistics are gathered on the forward passes of refresh steps only (NM:824, `precond_flag`),
    one `xᵀx / N` per micro-forward (NM:24-30), and folded in at that step's optimizer step:
    `cov.lerp_(accum / count, 0.05)` (NM:360-370), ridge `0.2·tr/d + 1e-8` (NM:387-389),
    Cholesky inverse (NM:391-392), then every step G ← G·inv before momentum (NM:421).
    """

    def __init__(self, model, refresh=32, ema=0.05, init=0.001, ridge=0.2, eps=1e-8):
        self.refresh, self.ema, self.ridge, self.eps = refresh, ema, ridge, eps
        self.stats = {}  # weight -> (list of column-block covariances, list of inverses)
        self.accum = {}  # weight -> [sum over micro-forwards of xᵀx/N per block], count
        self.hooks = []
        d = model.cfg.n_embd
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.Linear) and name.startswith("transformer.h."):
                nblocks = m.weight.shape[1] // d  # c_proj of the MLP: 4 blocks (NM:550, :567)
                self.stats[m.weight] = ([torch.eye(d) * init for _ in range(nblocks)],
                                        [torch.eye(d) for _ in range(nblocks)])
                self.hooks.append(m.register_forward_pre_hook(self._hook(m.weight, d, nblocks)))
        self.recording = False

    def _hook(self, w, d, nblocks):
        def f(_mod, args):
            if not self.recording:
                return
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            n = x.shape[0]
            sums, count = self.accum.get(w, ([torch.zeros(d, d) for _ in range(nblocks)], 0))
            for j in range(nblocks):
                xb = x[:, j * d:(j + 1) * d]
                sums[j] = sums[j] + xb.T @ xb / n
            self.accum[w] = (sums, count + 1)
        return f

    def is_refresh(self, step):
        # NM:134-137 with global_step = step (NM:823): t = step + 1, refresh when t % R == 0.
        return (step + 1) % self.refresh == 0

    def refresh_stats(self):
        for w, (covs, invs) in self.stats.items():
            if w not in self.accum:
                continue
            sums, count = self.accum[w]
            for j in range(len(covs)):
                covs[j] = covs[j].lerp(sums[j] / count, self.ema)
                K = covs[j].clone()
                d = K.shape[0]
                K.diagonal().add_(K.diagonal().sum() / d * self.ridge + self.eps)
                L, info = torch.linalg.cholesky_ex(K, upper=False, check_errors=False)
                assert int(info) == 0, "no factorisation fails in the golden runs"
                invs[j] = torch.cholesky_inverse(L, upper=False)
        self.accum = {}

    def precondition(self, w, g):
        covs, invs = self.stats[w]
        if len(invs) == 1:
            return g @ invs[0]
        d = invs[0].shape[0]
        return torch.cat([g[:, j * d:(j + 1) * d] @ invs[j] for j in range(len(invs))], dim=1)


def validate(model, files, B, T, world, val_tokens):
    # R:446-459: val_steps = val_tokens // (B·T·W); every rank resets its val loader, sums its
    # batch means; the ranks are averaged (all_reduce AVG), then divided by val_steps.
    assert val_tokens % (B * T * world) == 0
    val_steps = val_tokens // (B * T * world)
    per_rank = []
    with torch.no_grad():
        for r in range(world):
            loader = ShardLoader(files, B, T, r, world)
            total = 0.0
            for _ in range(val_steps):
                x, y = loader.next_batch()
                _, loss = model(x, y)
                total += loss
            per_rank.append(total)
    return (sum(per_rank) / world / val_steps).item()


def train(model, cfg, train_files, val_files, log):
    """R:427-504 (NM:775-844 with `newton_muon`), W ranks emulated. `cfg`: B, T, world, accum,
    steps, warmdown, val_every, val_tokens, head_lr, muon_lr, optim ('muon' | 'newton-muon'),
    refresh. Calls log(kind, step, values) for every train and val line."""
    B, T, W, A = cfg["B"], cfg["T"], cfg["world"], cfg["accum"]
    head = [model.lm_head.weight]
    blocks = list(model.transformer.h.parameters())
    adamw = torch.optim.AdamW(head, lr=cfg["head_lr"], betas=(0.9, 0.95), weight_decay=0.0)  # R:401-402
    nm = None
    if cfg["optim"] == "newton-muon":
        nm = NM1Preconditioner(model, refresh=cfg["refresh"])
        muon = Muon(blocks, cfg["muon_lr"], ns=ns_nm1)
    else:
        muon = Muon(blocks, cfg["muon_lr"], ns=ns_record4)
    sched = lambda s: lr_mult(s, cfg["steps"], 0, cfg["warmdown"])
    loaders = [ShardLoader(train_files, B, T, r, W) for r in range(W)]
    held = [l.next_batch() for l in loaders]  # R:373, before the clock
    for l in loaders:
        l.reset()  # R:432
    for step in range(cfg["steps"] + 1):
        last = step == cfg["steps"]
        if last or step % cfg["val_every"] == 0:  # R:440
            log("val", step, [validate(model, val_files, B, T, W, cfg["val_tokens"])])
        if last:
            break
        if nm is not None:
            nm.recording = nm.is_refresh(step)  # NM:823-824
        losses = []
        for r in range(W):
            for _ in range(A):
                x, y = held[r]  # R:488-490: train on the batch held ...
                _, loss = model(x, y)
                losses.append(loss.item())
                if r == 0:
                    train_loss = loss.item()  # R:491: rank 0 logs its last micro-batch
                held[r] = loaders[r].next_batch()  # R:493: ... then fetch the next
                loss.backward()
        for p in model.parameters():
            p.grad /= A * W  # R:500 (÷ accumulation) and DDP's average over ranks
        mult = sched(step)
        for g in adamw.param_groups:
            g["lr"] = cfg["head_lr"] * mult
        adamw.step()
        if nm is not None:
            if nm.is_refresh(step):
                nm.refresh_stats()  # NM:414-419
            nm.recording = False
            for p in blocks:
                p.grad = nm.precondition(p, p.grad)  # NM:421
        muon.step(mult)
        model.zero_grad(set_to_none=True)
        log("train", step + 1, [sum(losses) / len(losses), train_loss])
