"""Decay families. Each module exposes `lower(spec) -> dict[op, KernelPlan]` for the specs it serves.

- `gated`: decay none / fixed / scalar / vector, with SLA gates and the fused output norm;
- `delta`: Gated DeltaNet (WY / UT representation);
- `zeros`: ZeroS, plain and with the experimental decays.
"""

from __future__ import annotations

from types import ModuleType

from ...spec import VariantSpec
from . import delta, gated, zeros


def family_name(spec: VariantSpec) -> str:
    if spec.zero_sum:
        return "zeros"
    if spec.decay == "delta":
        return "delta"
    return "gated"


def family_for(spec: VariantSpec) -> ModuleType:
    return {"gated": gated, "delta": delta, "zeros": zeros}[family_name(spec)]
