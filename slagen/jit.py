"""Just-in-time path: render a variant's kernels, load them (cached on disk by content hash) and wrap
them in a differentiable `slagen.runtime.op.CompiledOp`, registered as torch custom ops."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Optional

from .codegen import lower, render
from .runtime.loader import load_source
from .runtime.op import CompiledOp
from .spec import VariantSpec


def compile_op(spec: VariantSpec, config: Optional[Mapping[str, Any]] = None,
               recurrent_config: Optional[Mapping[str, Any]] = None,
               backward_config: Optional[Mapping[str, Any]] = None) -> CompiledOp:
    """`config` / `recurrent_config` / `backward_config`: partial mappings over each plan's heuristic
    default (validated)."""
    plans = lower(spec)
    wanted = {"forward": config, "recurrent": recurrent_config, "backward": backward_config}
    modules, configs, sources = {}, {}, []
    for op, data in wanted.items():
        plan = plans[op]
        checked = plan.validate_config(data, partial=True)
        source = render(plan, checked)
        modules[op] = load_source(source)
        configs[op] = checked.as_dict()
        sources.append(source)
    return _differentiable(spec, modules, configs, hashlib.sha256("\0".join(sources).encode()).hexdigest()[:12])


def _differentiable(spec: VariantSpec, modules: dict, configs: dict, digest: str) -> CompiledOp:
    from .runtime import library
    from .runtime.autograd import Differentiable, saves_raw_output, stored_states_chunk
    from .runtime.guards import check_inputs

    backward = modules["backward"].backward
    grads = tuple(modules["backward"].GRADS)
    chunk = stored_states_chunk(modules["backward"])
    custom = {}
    for kind, fn in (("forward", modules["forward"].forward), ("recurrent", modules["recurrent"].recurrent)):
        def check(q, k, v, **kwargs):
            check_inputs(spec, q, k, v, **kwargs)

        kernels = Differentiable(fn, backward, grads, chunk if kind == "forward" else None)
        custom[kind] = library.register(f"{spec.name}_{kind}_{digest}", kernels, check, library.state_shapes(spec))
    return CompiledOp(spec, forward_fn=modules["forward"].forward, recurrent_fn=modules["recurrent"].recurrent,
                      configs=configs, backward_fn=backward, grads=grads, custom_ops=custom, states_chunk=chunk,
                      saves_output=saves_raw_output(modules["backward"]))
