"""Golden numbers for the Rust model test `model::tests::golden::golden_matches_pytorch`.

Builds a tiny record-4 GPT (vocab 97, 2 layers, 2 heads, d 32, T 16, B 2) with torch seed 1234, writes
  tests/fixtures/tiny_gpt.safetensors        (weights, PyTorch names, fp32)
  tests/fixtures/tiny_gpt_batch.safetensors  (idx, targets: int64, shape (2, 16))
and prints the loss, a few logits, the gradient L2 norms and the Frobenius norms of every hidden
Linear's input (what the Rust LayerInputSink must receive). Run from the repo root:
  .venv/bin/python scripts/golden_model.py
"""

import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_ref import GPT, GPTConfig  # noqa: E402

torch.manual_seed(1234)
cfg = GPTConfig(vocab_size=97, n_layer=2, n_head=2, n_embd=32, seq_len=16)
model = GPT(cfg)
# Default init gives near-uniform attention in so small a model; sharpen q/k (x4) so that the
# rotary convention, the causal mask and the softmax scale move the logits well above 1e-4.
with torch.no_grad():
    for block in model.transformer.h:
        block.attn.c_attn.weight[: 2 * cfg.n_embd].mul_(4.0)

B, T = 2, 16
idx = torch.randint(0, cfg.vocab_size, (B, T), dtype=torch.int64)
targets = torch.randint(0, cfg.vocab_size, (B, T), dtype=torch.int64)

os.makedirs("tests/fixtures", exist_ok=True)
weights = {n: p.detach().contiguous() for n, p in model.named_matrices().items()}
save_file(weights, "tests/fixtures/tiny_gpt.safetensors")
save_file({"idx": idx, "targets": targets}, "tests/fixtures/tiny_gpt_batch.safetensors")

inputs = {}


def hook(name):
    def f(_mod, args):
        x = args[0].detach()
        inputs[name] = x.reshape(-1, x.shape[-1]).norm().item()

    return f


for n, m in model.named_modules():
    if isinstance(m, torch.nn.Linear) and n.startswith("transformer.h."):
        m.register_forward_pre_hook(hook(n + ".weight"))

logits, loss = model(idx, targets)
loss.backward()

print(f"loss {loss.item():.9g}")
for b, t in [(0, 0), (0, T - 1), (1, 0), (1, T - 1)]:
    for v in [0, 1, 50, 96]:
        print(f"logit b={b} t={t} v={v} {logits[b, t, v].item():.9g}")
total = 0.0
for n, p in sorted(model.named_matrices().items()):
    g = p.grad.norm().item()
    total += g * g
    print(f"gradnorm {n} {g:.9g}")
print(f"gradnorm all {total ** 0.5:.9g}")
for n in sorted(inputs):
    print(f"inputnorm {n} {inputs[n]:.9g}")
