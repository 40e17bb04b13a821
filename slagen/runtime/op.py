"""`CompiledOp`: a variant's rendered kernels behind the call convention, with input guards.

Runtime side: imports torch, triton, slagen.spec and slagen.runtime only. `slagen.jit.compile_op` builds one
(render + load); generated packages may build one from their own embedded modules the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from ..spec import VariantSpec
from .guards import check_inputs


@dataclass(frozen=True)
class CompiledOp:
    """`op(q, k, v, *, ...) -> (o, final_state)` runs the chunked forward; `op.recurrent(...)` the
    step-by-step kernel (the decode step for one or a few tokens). Both check their inputs first."""

    spec: VariantSpec
    forward_fn: Callable[..., Any]
    recurrent_fn: Callable[..., Any]
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # op -> config it was rendered with

    def _run(self, fn: Callable[..., Any], q, k, v, kwargs: dict) -> Any:
        kwargs["scale"] = check_inputs(self.spec, q, k, v, **kwargs)
        return fn(q, k, v, **kwargs)

    def __call__(self, q, k, v, *, g=None, g_gamma=None, beta=None, read_logits=None, write_logits=None,
                 zs_logits=None, zs_gate1=None, zs_gateh=None, norm_weight=None, scale: Optional[float] = None,
                 initial_state=None, output_final_state: bool = False, cu_seqlens=None):
        return self._run(self.forward_fn, q, k, v, dict(
            g=g, g_gamma=g_gamma, beta=beta, read_logits=read_logits, write_logits=write_logits,
            zs_logits=zs_logits, zs_gate1=zs_gate1, zs_gateh=zs_gateh, norm_weight=norm_weight, scale=scale,
            initial_state=initial_state, output_final_state=output_final_state, cu_seqlens=cu_seqlens))

    def recurrent(self, q, k, v, *, g=None, g_gamma=None, beta=None, read_logits=None, write_logits=None,
                  zs_logits=None, zs_gate1=None, zs_gateh=None, norm_weight=None, scale: Optional[float] = None,
                  initial_state=None, output_final_state: bool = False, cu_seqlens=None):
        return self._run(self.recurrent_fn, q, k, v, dict(
            g=g, g_gamma=g_gamma, beta=beta, read_logits=read_logits, write_logits=write_logits,
            zs_logits=zs_logits, zs_gate1=zs_gate1, zs_gateh=zs_gateh, norm_weight=norm_weight, scale=scale,
            initial_state=initial_state, output_final_state=output_final_state, cu_seqlens=cu_seqlens))

    def __repr__(self) -> str:
        return f"CompiledOp({self.spec.name!r}, configs={dict(self.configs)!r})"
