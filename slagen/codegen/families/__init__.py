"""Decay families. Each module exposes `lower(spec) -> dict[op, KernelPlan]` for the specs it serves.

- `gated`: decay none / fixed / scalar / vector, with SLA gates and the fused output norm;
- `delta`: Gated DeltaNet (WY / UT representation);
- `zeros`: ZeroS, plain and with the experimental decays.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ...spec import VariantSpec
from ..plan import UnsupportedSpec


def family_name(spec: VariantSpec) -> str:
    if spec.zero_sum:
        return "zeros"
    if spec.decay == "delta":
        return "delta"
    return "gated"


def family_for(spec: VariantSpec) -> ModuleType:
    name = family_name(spec)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"{__name__}.{name}":
            raise UnsupportedSpec(f"spec {spec.name!r}: the {name!r} kernel family is not built yet") from None
        raise
