"""Golden bf16 Newton–Schulz outputs for `optim::tests::ns::bf16_forms_match_the_references`.

The two bf16 iterations of scripts/record4_ref.py, written from the records' code: record 4's
(train_gpt2.py:38-44, PyTorch op by op) and NM-1's (train_gpt_newton_muon_1.py:65-95, its Triton
kernels as the fp32-accumulating ops they are), run by PyTorch on the CPU in bf16 on seeded fp32
inputs of three shapes (tall, wide, square). Writes tests/fixtures/ns_bf16_golden.safetensors
(inputs, and both outputs as fp32, which holds every bf16 value exactly) and prints how far
apart the two forms are. Run from the repo root:
  .venv/bin/python scripts/golden_ns_bf16.py
"""

import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import record4_ref as ref  # noqa: E402

SHAPES = [(48, 16), (16, 40), (32, 32)]


def main():
    torch.manual_seed(20241011)
    out = {}
    for i, shape in enumerate(SHAPES):
        u = torch.randn(shape, dtype=torch.float32)
        r4 = ref.ns_record4(u, 5, dtype=torch.bfloat16)
        nm = ref.ns_nm1(u, 5, dtype=torch.bfloat16)
        out[f"u{i}"], out[f"record4_{i}"], out[f"nm1_{i}"] = u, r4.float().contiguous(), nm.float().contiguous()
        diff = (r4.float() - nm.float()).abs()
        print(f"shape {shape}: record4 vs nm1: {int((diff > 0).sum())} of {diff.numel()} elements differ, "
              f"max |diff| {diff.max().item():.6e}, sum record4 {r4.float().sum().item():.9e}, "
              f"sum nm1 {nm.float().sum().item():.9e}")
    save_file(out, "tests/fixtures/ns_bf16_golden.safetensors")


if __name__ == "__main__":
    main()
