"""PyTorch reference of the modded-nanogpt record-4 GPT (docs/model.md).

Written from docs/model.md for golden numbers and CPU peer benchmarks; fp32 unless the caller uses autocast.
Parameter names match the Rust model (`src/model/`) and PyTorch checkpoints of record 4:
transformer.wte.weight (tied with lm_head.weight), transformer.h.{i}.attn.c_attn.weight,
transformer.h.{i}.attn.c_proj.weight, transformer.h.{i}.mlp.c_fc.weight, transformer.h.{i}.mlp.c_proj.weight.

Import from another script in scripts/:  `from gpt_ref import GPT, GPTConfig`.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    seq_len: int = 1024
    rope_base: float = 10000.0


def add_shape_args(parser):
    """The model-shape flags the peer scripts share (record 4's by default)."""
    parser.add_argument("--n-layer", type=int, default=12)
    parser.add_argument("--n-head", type=int, default=12)
    parser.add_argument("--n-embd", type=int, default=768)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=50257)


def config_of(args):
    """The GPTConfig of the flags of add_shape_args."""
    return GPTConfig(vocab_size=args.vocab, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd, seq_len=args.seq_len)


def rms_norm(x):
    # Weightless RMSNorm in fp32, eps 1e-6 (docs/model.md, "Normalisation").
    xf = x.float()
    return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)


def rotary_tables(seq_len, head_dim, base, device=None):
    # cos/sin of shape (T, head_dim/2) in fp32.
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    t = torch.arange(seq_len, device=device).float()
    freqs = torch.outer(t, inv_freq)
    return freqs.cos(), freqs.sin()


def apply_rotary(x, cos, sin):
    # x: (B, T, H, hd). Half-split layout, the record's sign convention (docs/model.md, "Rotary"):
    # y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos.
    d = x.shape[3] // 2
    x1, x2 = x[..., :d].float(), x[..., d:].float()
    cos = cos[None, :, None, :]
    sin = sin[None, :, None, :]
    y1 = x1 * cos + x2 * sin
    y2 = -x1 * sin + x2 * cos
    return torch.cat([y1, y2], dim=3).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        cos, sin = rotary_tables(cfg.seq_len, self.head_dim, cfg.rope_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, self.head_dim)
        k = k.view(B, T, self.n_head, self.head_dim)
        v = v.view(B, T, self.n_head, self.head_dim)
        q = apply_rotary(q, self.cos[:T], self.sin[:T])
        k = apply_rotary(k, self.cos[:T], self.sin[:T])
        # SDPA default scale is 1/sqrt(head_dim), as in the record.
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))  # exact (erf) GELU


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attn = CausalSelfAttention(cfg)
        self.mlp = MLP(cfg)
        self.attn_scale = 1.0 / math.sqrt(2 * cfg.n_layer)

    def forward(self, x):
        x = x + self.attn_scale * self.attn(rms_norm(x))
        x = x + self.mlp(rms_norm(x))
        return x


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        # Tied: the matrix keeps nn.Linear's init U(+-1/sqrt(n_embd)) (docs/model.md, "Initialisation").
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx, targets=None):
        x = self.transformer.wte(idx)
        for block in self.transformer.h:
            x = block(x)
        x = rms_norm(x)
        logits = self.lm_head(x).float()
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def named_matrices(self):
        """State-dict style names -> parameters, the tied matrix once as transformer.wte.weight."""
        return {n: p for n, p in self.named_parameters() if not n.startswith("lm_head.")}
