"""Golden tokens for the Rust test `model::tests::generate::greedy_matches_pytorch` and the CLI
test `sample_reproduces_the_pytorch_golden_tokens` (tests/cli.rs).

Trains a tiny record-4 GPT (scripts/gpt_ref.py: vocab 97, 2 layers, 2 heads, d 32, T 16) for 300
AdamW steps on a synthetic second-order Markov sequence (torch seed 0), writes it to
  tests/fixtures/sample_gpt.safetensors   (fp32, PyTorch names)
then decodes 32 tokens greedily after the prompt "m,A.z" (GPT-2 BPE ids 76 11 32 13 89, all
inside the tiny vocabulary, so `speedrun sample --prompt "m,A.z"` can give it too), twice (scripts/gpt_decode.py): with
a KV cache, and re-running the whole window for every token. Both slide the 16-token context as
speedrun does, so the 32 tokens cross it twice. Prints the prompt, the tokens, and the smallest gap
between the two largest logits over the steps: a gap far above fp32 rounding means another
correct implementation cannot pick a different token. Run from the repo root:
  .venv/bin/python scripts/golden_sample.py
"""

import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_decode import generate  # noqa: E402
from gpt_ref import GPT, GPTConfig  # noqa: E402

torch.manual_seed(0)
V, T = 97, 16
cfg = GPTConfig(vocab_size=V, n_layer=2, n_head=2, n_embd=32, seq_len=T)
model = GPT(cfg)

# Token t follows from tokens t-1 and t-2 by a fixed random table, except 10% of the time.
table = torch.randint(0, V, (V, V))
n = 50_000
seq = torch.empty(n, dtype=torch.int64)
seq[:2] = torch.tensor([1, 2])
noise = torch.rand(n) < 0.1
rand = torch.randint(0, V, (n,))
for i in range(2, n):
    seq[i] = rand[i] if noise[i] else table[seq[i - 2], seq[i - 1]]

opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
for step in range(300):
    starts = torch.randint(0, n - T - 1, (32,))
    x = torch.stack([seq[s : s + T] for s in starts])
    y = torch.stack([seq[s + 1 : s + T + 1] for s in starts])
    _, loss = model(x, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"final train loss {loss.item():.4f}")

model.eval()
weights = {k: p.detach().contiguous() for k, p in model.named_matrices().items()}
save_file(weights, "tests/fixtures/sample_gpt.safetensors")

prompt = [76, 11, 32, 13, 89]  # "m,A.z"; tests/cli.rs checks speedrun's tokenizer agrees
cached, gap_c = generate(model, prompt, 32, cache=True)
full, gap_f = generate(model, prompt, 32, cache=False)
assert cached == full, (cached, full)
print("prompt", " ".join(map(str, prompt)))
print("tokens", " ".join(map(str, cached)))
print(f"smallest top-2 logit gap {min(gap_c, gap_f):.4f}")
