"""`lower(spec) -> {op: KernelPlan}`: each decay family lowers itself in `families/`."""

from __future__ import annotations

from ..spec import VariantSpec
from .plan import KernelPlan, UnsupportedSpec


def lower(spec: VariantSpec) -> dict[str, KernelPlan]:
    """All ops this build can generate for the spec, keyed by op name ("forward", "recurrent", ...)."""
    from .families import family_for

    family = family_for(spec)
    plans = family.lower(spec)
    if not plans:
        raise UnsupportedSpec(f"spec {spec.name!r}: no kernels for decay={spec.decay!r} zero_sum={spec.zero_sum} yet")
    return plans


def plan_for(spec: VariantSpec, op: str) -> KernelPlan:
    plans = lower(spec)
    if op not in plans:
        raise UnsupportedSpec(
            f"spec {spec.name!r}: op {op!r} is not generated yet for this variant (available: {sorted(plans)})"
        )
    return plans[op]
