"""Just-in-time path: render a variant's kernels, load them (cached on disk by content hash) and wrap
them in a `slagen.runtime.op.CompiledOp`."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from .codegen import UnsupportedSpec, lower, render
from .runtime.loader import load_source
from .runtime.op import CompiledOp
from .spec import VariantSpec

OPS = ("forward", "recurrent")


def compile_op(spec: VariantSpec, config: Optional[Mapping[str, Any]] = None,
               recurrent_config: Optional[Mapping[str, Any]] = None) -> CompiledOp:
    """`config` / `recurrent_config`: partial mappings over each plan's heuristic default (validated)."""
    plans = lower(spec)
    missing = [op for op in OPS if op not in plans]
    if missing:
        raise UnsupportedSpec(f"spec {spec.name!r}: no {'/'.join(missing)} kernel for this variant yet")
    fns, configs = {}, {}
    for op, data in (("forward", config), ("recurrent", recurrent_config)):
        plan = plans[op]
        checked = plan.validate_config(data, partial=True)
        module = load_source(render(plan, checked))
        fns[op] = getattr(module, op)
        configs[op] = checked.as_dict()
    return CompiledOp(spec, forward_fn=fns["forward"], recurrent_fn=fns["recurrent"], configs=configs)
