"""Greedy decoding of the record-4 GPT of scripts/gpt_ref.py, with a KV cache of its own and
without one, sliding the context as speedrun's generator does (docs/model.md, "Generation"):
when a new token would make the window longer than seq_len, the model restarts on the last
seq_len // 2 tokens, re-encoded from position 0.

Written from docs/model.md for scripts/golden_sample.py (golden tokens) and
scripts/bench_sample_torch.py (the PyTorch peer of `speedrun bench sample`).
"""

import torch
import torch.nn.functional as F

from gpt_ref import apply_rotary, rms_norm


class KVDecoder:
    """Keys and values of every block in preallocated (B, H, seq_len, hd) buffers, written in
    place; rotary angles of new tokens continue from the number of cached positions."""

    def __init__(self, model, batch=1):
        self.m = model
        cfg = model.cfg
        self.h, self.hd = cfg.n_head, cfg.n_embd // cfg.n_head
        shape = (batch, self.h, cfg.seq_len, self.hd)
        w = model.transformer.wte.weight
        self.k = [torch.zeros(shape, dtype=w.dtype, device=w.device) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, dtype=w.dtype, device=w.device) for _ in range(cfg.n_layer)]
        self.pos = 0

    def reset(self):
        self.pos = 0

    @torch.no_grad()
    def feed(self, ids):
        """Run ids (B, T) at positions pos..pos+T; logits (B, vocab) of the last one."""
        B, T = ids.shape
        p, end = self.pos, self.pos + T
        C = self.m.cfg.n_embd
        x = self.m.transformer.wte(ids)
        # Query i (position p + i) sees keys 0..p+i; one new token sees them all.
        mask = None if T == 1 else torch.ones(T, end, dtype=torch.bool, device=ids.device).tril(diagonal=p)
        for i, block in enumerate(self.m.transformer.h):
            attn = block.attn
            q, k, v = attn.c_attn(rms_norm(x)).split(C, dim=2)
            q = apply_rotary(q.view(B, T, self.h, self.hd), attn.cos[p:end], attn.sin[p:end])
            k = apply_rotary(k.view(B, T, self.h, self.hd), attn.cos[p:end], attn.sin[p:end])
            self.k[i][:, :, p:end] = k.transpose(1, 2)
            self.v[i][:, :, p:end] = v.view(B, T, self.h, self.hd).transpose(1, 2)
            y = F.scaled_dot_product_attention(q.transpose(1, 2), self.k[i][:, :, :end], self.v[i][:, :, :end], attn_mask=mask)
            x = x + block.attn_scale * attn.c_proj(y.transpose(1, 2).reshape(B, T, C))
            x = x + block.mlp(rms_norm(x))
        self.pos = end
        return self.m.lm_head(rms_norm(x[:, -1])).float()


@torch.no_grad()
def last_logits(model, ids):
    """The full forward of ids (B, T), the head on the last position only (as the cache does)."""
    x = model.transformer.wte(ids)
    for block in model.transformer.h:
        x = block(x)
    return model.lm_head(rms_norm(x[:, -1])).float()


@torch.no_grad()
def generate(model, prompt, n, cache=True, on_token=None):
    """Greedy: n new tokens after prompt (a list of ids). Returns (tokens, smallest gap between
    the two largest logits over the steps)."""
    seq_len = model.cfg.seq_len
    dev = model.transformer.wte.weight.device
    tokens, start = list(prompt), 0
    dec = KVDecoder(model) if cache else None

    def forward(slid):
        window = tokens[start:]
        if dec is None:
            return last_logits(model, torch.tensor([window], device=dev))
        if slid:
            dec.reset()
        return dec.feed(torch.tensor([window[dec.pos:]], device=dev))

    logits = forward(False)
    out, gap = [], float("inf")
    for i in range(n):
        top2 = logits[0].topk(2).values
        gap = min(gap, (top2[0] - top2[1]).item())
        nxt = int(logits[0].argmax())  # the first of equal maxima, as speedrun's argmax
        out.append(nxt)
        if on_token is not None:
            on_token(i)
        if i + 1 < n:
            tokens.append(nxt)
            slid = len(tokens) - start > seq_len
            if slid:
                start = len(tokens) - max(seq_len // 2, 1)
            logits = forward(slid)
    return out, gap
