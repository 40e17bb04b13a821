"""Grouped value heads and strided inputs: what each kernel path reads in place, and the one copy otherwise.

Heads (docs/conventions.md "Heads and strides"): q, k carry H heads; v, the gates, logits and states
HV = G * H (fla's GVA; G from the shapes). Strides: q, k, v, g, beta are read in place when
`launch.in_place` holds (unit stride on the last dim, heads D apart, batch rows T token rows apart; any token
stride, e.g. views split from one fused projection); any other layout gets one explicit copy
(`.contiguous()`), here. Outputs and gradients are contiguous, in the input's shape.

Every kernel path (forward, recurrent, backward of every family) reads grouped heads and row strides, and
so does context parallelism (its exchanged states and maps have HV rows, `cp_state`).

torch + slagen.spec only (runtime leaf).
"""

from __future__ import annotations

import torch

from .launch import in_place

# The inputs the converted kernels read through a row stride (launch.strides); every other tensor input
# stays contiguous (checked by guards.check_inputs).
STRIDED = ("q", "k", "v", "g", "beta")


def readable(q, k, v, kwargs: dict):
    """`(q, k, v)` as the kernels read them, `kwargs`' g and beta replaced likewise: in place where
    `launch.in_place` holds, else one copy."""

    def fix(x):
        if not isinstance(x, torch.Tensor) or x.is_contiguous() or in_place(x):
            return x
        return x.contiguous()

    for name in ("g", "beta"):
        if kwargs.get(name) is not None:
            kwargs[name] = fix(kwargs[name])
    return fix(q), fix(k), fix(v)
