"""`CompiledOp`: a variant's rendered kernels behind the call convention, with input guards.

Runtime side: imports torch, triton, slagen.spec and slagen.runtime only. `slagen.jit.compile_op` builds one
(render + load); generated packages may build one from their own embedded modules the same way.

Three ways a call runs: plain launch (no input requires grad); through `autograd.AttentionFunction` (eager,
some input requires grad; needs a backward); through the torch custom ops of `library` (while
`torch.compile` traces: the op is one opaque node with fake shapes and registered autograd). With
`cp_context` the call is one rank's part of a context-parallel call (`cp`), which calls the op per pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch

from ..spec import VariantSpec
from . import autograd, cp, layout
from .guards import check_inputs, default_scale


@dataclass(frozen=True)
class CompiledOp:
    """`op(q, k, v, *, ...) -> (o, final_state)` runs the chunked forward; `op.recurrent(...)` the
    step-by-step kernel (the decode step for one or a few tokens). Both check their inputs first, and both
    are differentiable when the variant has a backward (the recurrent path reuses the chunked backward)."""

    spec: VariantSpec
    forward_fn: Callable[..., Any]
    recurrent_fn: Callable[..., Any]
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # op -> config it was rendered with
    backward_fn: Optional[Callable[..., dict]] = None
    grads: tuple[str, ...] = ()  # the inputs backward_fn differentiates (its module's GRADS)
    custom_ops: Mapping[str, Any] = field(default_factory=dict)  # "forward"/"recurrent" -> library.CustomAttention
    states_chunk: Optional[int] = None  # the backward keeps the chunked forward's states at this chunk size
    saves_output: bool = False  # the backward reads the chunked forward's output before its epilogue

    def _run(self, kind: str, fn: Callable[..., Any], q, k, v, kwargs: dict) -> Any:
        if kind in self.custom_ops and torch.compiler.is_compiling():
            # guards run inside the op's real implementation (they read values dynamo must not trace)
            q, k, v = layout.readable(q, k, v, kwargs)
            kwargs["scale"] = default_scale(self.spec) if kwargs["scale"] is None else float(kwargs["scale"])
            return self.custom_ops[kind](q, k, v, kwargs)
        kwargs["scale"] = check_inputs(self.spec, q, k, v, **kwargs)
        q, k, v = layout.readable(q, k, v, kwargs)  # in place, or one copy (docs/conventions.md "Heads and strides")
        if self.backward_fn is not None and autograd.needs_grad(q, k, v, kwargs):
            # the recurrent pass has no chunk states and keeps no o_raw: the backward recomputes them
            chunk = self.states_chunk if kind == "forward" else None
            raw = self.saves_output and kind == "forward"
            return autograd.apply(autograd.Differentiable(fn, self.backward_fn, self.grads, chunk, raw), q, k, v,
                                  kwargs)
        return fn(q, k, v, **kwargs)

    def __call__(self, q, k, v, *, g=None, g_gamma=None, beta=None, read_logits=None, write_logits=None,
                 zs_logits=None, zs_gate1=None, zs_gateh=None, norm_weight=None, A_log=None, dt_bias=None,
                 scale: Optional[float] = None, initial_state=None, output_final_state: bool = False, cu_seqlens=None,
                 cp_context=None):
        kwargs = dict(
            g=g, g_gamma=g_gamma, beta=beta, read_logits=read_logits, write_logits=write_logits,
            zs_logits=zs_logits, zs_gate1=zs_gate1, zs_gateh=zs_gateh, norm_weight=norm_weight, A_log=A_log,
            dt_bias=dt_bias, scale=scale, initial_state=initial_state, output_final_state=output_final_state,
            cu_seqlens=cu_seqlens)
        if cp_context is not None:  # this rank's slice of a sequence split across a process group
            return cp.attention(self.spec, self, q, k, v, kwargs, cp_context, self.grads)
        return self._run("forward", self.forward_fn, q, k, v, kwargs)

    def recurrent(self, q, k, v, *, g=None, g_gamma=None, beta=None, read_logits=None, write_logits=None,
                  zs_logits=None, zs_gate1=None, zs_gateh=None, norm_weight=None, A_log=None, dt_bias=None,
                  scale: Optional[float] = None, initial_state=None, output_final_state: bool = False, cu_seqlens=None):
        return self._run("recurrent", self.recurrent_fn, q, k, v, dict(
            g=g, g_gamma=g_gamma, beta=beta, read_logits=read_logits, write_logits=write_logits,
            zs_logits=zs_logits, zs_gate1=zs_gate1, zs_gateh=zs_gateh, norm_weight=norm_weight, A_log=A_log,
            dt_bias=dt_bias, scale=scale, initial_state=initial_state, output_final_state=output_final_state,
            cu_seqlens=cu_seqlens))

    def __repr__(self) -> str:
        return f"CompiledOp({self.spec.name!r}, configs={dict(self.configs)!r})"
