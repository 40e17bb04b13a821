"""Grouped value heads and strided inputs: what each kernel path reads in place, and the one copy otherwise.

Heads (docs/conventions.md "Heads and strides"): q, k carry H heads; v, the gates, logits and states
HV = G * H (fla's GVA; G from the shapes). Strides: q, k, v, g, beta are read in place when
`launch.in_place` holds (unit stride on the last dim, heads D apart, batch rows T token rows apart; any token
stride, e.g. views split from one fused projection); any other layout gets one explicit copy
(`.contiguous()`), here. Outputs and gradients are contiguous, in the input's shape.

Kernel paths that do not take row strides and G yet (issue #13, phase 2: the backward of the gated and delta
families, the delta rule's chunked forward) get contiguous copies of every strided input and refuse
grouped value heads with a one-line NotImplementedError naming `v`.

torch + slagen.spec only (runtime leaf).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..spec import VariantSpec
from .launch import in_place

# The inputs the converted kernels read through a row stride (launch.strides); every other tensor input
# stays contiguous (checked by guards.check_inputs).
STRIDED = ("q", "k", "v", "g", "beta")


def unconverted_path(spec: VariantSpec, op: str, grad: bool) -> Optional[str]:
    """The kernel path of this call that reads neither row strides nor grouped heads yet, in words, or None."""
    if spec.zero_sum:  # every ZeroS kernel (forward, recurrent, backward) reads them
        return None
    if grad:
        return "the backward kernels (inputs that require grad)"
    if spec.decay == "delta" and op == "forward":
        return "the delta rule's chunked forward (op.recurrent reads them)"
    return None


def check_grouped(q: torch.Tensor, v: torch.Tensor, path: Optional[str]) -> None:
    """Refuse grouped value heads on a path that cannot read them (one line naming v)."""
    if path is None or not (isinstance(q, torch.Tensor) and isinstance(v, torch.Tensor)):
        return
    if v.dim() == 4 and q.dim() == 4 and v.shape[2] != q.shape[2]:
        raise NotImplementedError(
            f"v: grouped value heads (HV={v.shape[2]} value heads over H={q.shape[2]} q/k heads) are not "
            f"supported by {path} yet; expected v with {q.shape[2]} heads")


def readable(spec: VariantSpec, op: str, q, k, v, kwargs: dict, grad: bool):
    """`(q, k, v)` as the chosen kernel path reads them, `kwargs`' g and beta replaced in place likewise:
    in place where it can (`launch.in_place` on a converted path, contiguous on the others), else one copy.
    Refuses grouped value heads where the path cannot read them."""
    path = unconverted_path(spec, op, grad)
    check_grouped(q, v, path)

    def fix(x):
        if not isinstance(x, torch.Tensor) or x.is_contiguous():
            return x
        return x if path is None and in_place(x) else x.contiguous()

    for name in ("g", "beta"):
        if kwargs.get(name) is not None:
            kwargs[name] = fix(kwargs[name])
    return fix(q), fix(k), fix(v)
