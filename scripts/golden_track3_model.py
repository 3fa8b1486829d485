"""Golden forward/backward of the Track-3 GPT (scripts/track3_ref.py, B = train_gpt_simple.py).

The tiny model of scripts/golden_track3.py (vocab 512, 2 layers, width 64, head_dim 32: 2 heads)
with a NON-zero init, so that every parameter gets a gradient: torch seed 6, PyTorch's
construction-time init (embedding N(0, 1), Linear weights and biases U(±1/sqrt(fan_in)), gains 1),
then 0.1·N(0, 1) added, in named_parameters order, to every parameter with "proj" in its name (the
head and both residual projections, weights and biases) and to every `gains`. One batch, B=2 T=16:
the first 33 tokens of tests/fixtures/golden_train/golden_val_000000.bin as the generator cuts
them (inputs tokens[0:32], targets tokens[1:33]). Writes
  tests/fixtures/track3_model/model.safetensors  (B's parameter names, fp32)
  tests/fixtures/track3_model/batch.safetensors  (idx, targets: int64, shape (2, 16))
and prints the summed loss (B's reduction), the loss per token, 16 logits after the softcap, every
parameter's gradient L2 norm, and for q and k of each block, after the per-head RMSNorm and before
the rotary, the L2 norm of the tensor and of its gradient. Run from the repo root:
  .venv/bin/python scripts/golden_track3_model.py
"""

import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import track3_ref as ref  # noqa: E402
from record4_ref import read_shard  # noqa: E402

OUT = "tests/fixtures/track3_model"
VAL = "tests/fixtures/golden_train/golden_val_000000.bin"
B, T = 2, 16


def main():
    torch.set_num_threads(1)
    torch.manual_seed(6)
    model = ref.Track3GPT(vocab=512, layers=2, width=64, head_dim=32, seq_len=T)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "proj" in name or name.endswith("gains"):
                p.add_(0.1 * torch.randn_like(p))
    buf = torch.from_numpy(read_shard(VAL)[: B * T + 1].astype("int64"))
    idx, targets = buf[:-1].view(B, T).clone(), buf[1:].view(B, T).clone()

    os.makedirs(OUT, exist_ok=True)
    save_file({n: p.detach().contiguous() for n, p in model.named_parameters()}, f"{OUT}/model.safetensors")
    save_file({"idx": idx, "targets": targets}, f"{OUT}/batch.safetensors")

    taps = []
    for blk in model.blocks:
        blk.attn.taps = {}
        taps.append(blk.attn.taps)
    logits = model.logits(idx)  # what model(idx, targets) computes before its cross-entropy
    loss = F.cross_entropy(logits.view(targets.numel(), -1), targets.view(-1), reduction="sum")
    loss.backward()

    print(f"loss {loss.item():.9g}")
    print(f"loss_per_token {loss.item() / targets.numel():.9g}")
    for b in (0, 1):
        for t in (0, T - 1):
            for v in (0, 1, 50, 511):
                print(f"logit b={b} t={t} v={v} {logits[b, t, v].item():.9g}")
    total = 0.0
    for n, p in sorted(model.named_parameters()):
        g = p.grad.norm().item()
        total += g * g
        print(f"gradnorm {n} {g:.9g}")
    print(f"gradnorm all {total ** 0.5:.9g}")
    for i, tap in enumerate(taps):
        for k in ("q", "k"):
            x = tap[k]
            print(f"qknorm blocks.{i}.attn.{k} {x.norm().item():.9g} grad {x.grad.norm().item():.9g}")


if __name__ == "__main__":
    main()
