"""`lower(spec) -> {op: KernelPlan}`: each decay family lowers itself in `families/`."""

from __future__ import annotations

from ..spec import VariantSpec
from .families import family_for
from .plan import KernelPlan, UnsupportedSpec


def lower(spec: VariantSpec) -> dict[str, KernelPlan]:
    """The variant's plans keyed by op: "forward", "recurrent" and "backward" (every family lowers all three;
    a spec no family can serve raises UnsupportedSpec from the family)."""
    return family_for(spec).lower(spec)


def plan_for(spec: VariantSpec, op: str) -> KernelPlan:
    plans = lower(spec)
    if op not in plans:
        raise UnsupportedSpec(f"op: expected one of {sorted(plans)} for spec {spec.name!r}, got {op!r}")
    return plans[op]
