"""Relative-RMS tolerances of kernel results against the float64 reference, per input dtype, in one place.

The reference runs on the exact float64 draw; the kernels get it rounded to the input dtype, feed their dots
in that dtype (fp32 accumulation) and round the outputs to it. The floor is what the float64 reference itself
attains on the rounded inputs with its outputs rounded (gated family, B=2 T=37 H=3, seed 21; gradients alike):
  fp16 ~4e-4 (outputs), 3e-4 (final state), 2e-4..8e-4 (gradients)
  bf16 ~3e-3 (outputs), 2e-3 (final state), 1e-3..4e-3 (gradients)
ZeroS (zeros, zeros_mamba2, B=2 T=37 H=2, logits/gates fp32) has the same floor; its kernels reach fp16 ~5e-4
(outputs), 3e-4..6e-4 (gradients), bf16 ~1.1e-2 (outputs: the zero-sum weight tile rounded to bf16), 2e-3..7e-3
(gradients), inside the same tolerances (tests/kernels/test_zeros_low_precision.py).
fla-style arithmetic (decay-scaled q/k, the intra-chunk matrix A and the chunk states rounded to the input
dtype before each dot) adds about as much again; the tolerances leave ~5x headroom over the floor.
"""

from __future__ import annotations

import torch

TOL = {
    torch.float32: 1e-4,  # fp32 dots (TF32 on a GPU, exact under the interpreter)
    torch.float16: 2e-3,
    torch.bfloat16: 2e-2,
}


def tol(dtype: torch.dtype) -> float:
    return TOL[dtype]
