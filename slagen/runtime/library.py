"""torch custom ops for the kernels, so that `torch.compile(fullgraph=True)` treats a call as one opaque node.

`register(name, kernels, check, state_shapes)` defines two ops once per process (names are unique per
variant and rendered configs, e.g. `slagen::sla_gla_3f9c0a12b4de`):
- `slagen::<name>(q, k, v, g?, g_gamma?, ..., norm_weight?, Tensor[] initial_state, cu_seqlens?, float scale,
  bool output_final_state) -> (Tensor o, Tensor[] final_state, Tensor[] states)`: the forward launcher;
  `states` holds the parts of the per-chunk states, shaped like the final state's parts with
  `B * ceil(T / chunk)` rows (`[NT, H, K, V]`, or ZeroS's `[NT, H, 3, K, V]` and `[NT, H, 4]`), when
  `kernels.states_chunk` asks for them and the call is not varlen (whose chunk count depends on cu_seqlens'
  values, which a fake implementation cannot see: varlen calls recompute), else it is empty;
- `slagen::<name>_backward(..., Tensor do, Tensor[] dht, Tensor[] states, float scale) -> Tensor[]`: one
  gradient per differentiable input present (in `kernels.grads` order, state parts expanded);
with fake implementations for shapes (dynamo traces them) and `register_autograd` tying the two together.
The real implementations launch the Triton kernels (the interpreter's, on CPU under TRITON_INTERPRET=1).

torch only (runtime leaf).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from .autograd import TENSOR_INPUTS, Differentiable, join_state, run_backward, run_forward, state_parts

_LOCK = threading.Lock()
_OPS: dict[str, "CustomAttention"] = {}


def state_shapes(spec):
    """Final-state part shapes per (N, H, K, V) of a VariantSpec, for the fake implementations (with N = the
    number of chunks, the shapes of the per-chunk states a "store" backward keeps)."""
    if spec.zero_sum:
        return lambda N, H, K, V: [(N, H, 3, K, V), (N, H, 4)]
    return lambda N, H, K, V: [(N, H, K, V)]


def op_name(*parts: str) -> str:
    """A valid custom-op name from free text (variant names, hashes)."""
    return re.sub(r"\W", "_", "_".join(parts))


class CustomAttention:
    """The registered pair of ops for one variant + config; `__call__` takes the call convention."""

    def __init__(self, name: str, forward_op, backward_op) -> None:
        self.name, self.forward_op, self.backward_op = name, forward_op, backward_op

    def __call__(self, q, k, v, kwargs: dict):
        state = state_parts(kwargs.get("initial_state"))
        o, finals, _ = self.forward_op(q, k, v, *(kwargs.get(n) for n in TENSOR_INPUTS), state,
                                       kwargs.get("cu_seqlens"), float(kwargs["scale"]),
                                       bool(kwargs.get("output_final_state")))
        return o, (join_state(list(finals)) if kwargs.get("output_final_state") else None)


def register(name: str, kernels: Differentiable, check: Callable[..., None],
             state_shapes: Callable[[int, int, int, int], list[tuple[int, ...]]]) -> CustomAttention:
    """Define (once) the ops `slagen::<name>` and `slagen::<name>_backward`. `check(q, k, v, **kwargs)` runs
    the input guards in the real implementation; `state_shapes(N, H, K, V)` gives the final-state parts'
    shapes for the fake implementation (all fp32), and with N = the chunk count those of the per-chunk
    states."""
    name = op_name(name)
    with _LOCK:
        if name not in _OPS:
            _OPS[name] = _registered(name) or _define(name, kernels, check, state_shapes)
        return _OPS[name]


def _registered(name: str) -> Optional[CustomAttention]:
    """The ops another copy of this runtime registered under `name` (each generated package carries its own
    copy, and torch's op registry is one per process), or None."""
    try:
        return CustomAttention(name, getattr(torch.ops.slagen, name), getattr(torch.ops.slagen, f"{name}_backward"))
    except (AttributeError, RuntimeError):
        return None


def _inputs(opt: Sequence[Optional[Tensor]]) -> dict:
    return dict(zip(TENSOR_INPUTS, opt))


def _grad_slots(kernels: Differentiable, q, k, v, inputs: dict, state: Sequence[Tensor]) -> list[Tensor]:
    """The inputs that get a gradient from the backward op, in order (state parts expanded)."""
    given = {"q": q, "k": k, "v": v, **inputs}
    slots = []
    for name in kernels.grads:
        if name == "initial_state":
            slots.extend(state)
        elif given.get(name) is not None:
            slots.append(given[name])
    return slots


def _keeps_states(kernels: Differentiable, cu_seqlens: Optional[Tensor]) -> bool:
    return kernels.states_chunk is not None and cu_seqlens is None


def _define(name: str, kernels: Differentiable, check, state_shapes) -> CustomAttention:
    lib = f"slagen::{name}"

    @torch.library.custom_op(lib, mutates_args=())
    def forward_op(q: Tensor, k: Tensor, v: Tensor, g: Optional[Tensor], g_gamma: Optional[Tensor],
                   beta: Optional[Tensor], read_logits: Optional[Tensor], write_logits: Optional[Tensor],
                   zs_logits: Optional[Tensor], zs_gate1: Optional[Tensor], zs_gateh: Optional[Tensor],
                   norm_weight: Optional[Tensor], A_log: Optional[Tensor], dt_bias: Optional[Tensor],
                   initial_state: list[Tensor], cu_seqlens: Optional[Tensor], scale: float,
                   output_final_state: bool) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        inputs = _inputs((g, g_gamma, beta, read_logits, write_logits, zs_logits, zs_gate1, zs_gateh, norm_weight,
                          A_log, dt_bias))
        kwargs = dict(inputs, scale=scale, initial_state=join_state(initial_state),
                      output_final_state=output_final_state, cu_seqlens=cu_seqlens)
        check(q, k, v, **kwargs)
        chunk = kernels.states_chunk if _keeps_states(kernels, cu_seqlens) else None
        # the custom op's outputs are fixed: o_raw is not kept here, the backward recomputes it
        o, final, states, _ = run_forward(dataclasses.replace(kernels, states_chunk=chunk, saves_output=False),
                                          q, k, v, kwargs)
        return o, state_parts(final), state_parts(states)  # fresh buffers: outputs never alias inputs

    @forward_op.register_fake
    def _(q, k, v, g, g_gamma, beta, read_logits, write_logits, zs_logits, zs_gate1, zs_gateh, norm_weight, A_log,
          dt_bias, initial_state, cu_seqlens, scale, output_final_state):
        B, _, _, K = q.shape
        H = v.shape[2]  # states carry the value heads (HV = G * H with grouped value heads)
        N = B if cu_seqlens is None else cu_seqlens.shape[0] - 1
        finals = [q.new_empty(s, dtype=torch.float32) for s in state_shapes(N, H, K, v.shape[-1])]
        states = []
        if _keeps_states(kernels, cu_seqlens):
            n_chunks = (q.shape[1] + kernels.states_chunk - 1) // kernels.states_chunk
            states = [q.new_empty(s, dtype=torch.float32) for s in state_shapes(B * n_chunks, H, K, v.shape[-1])]
        return torch.empty_like(v), finals if output_final_state else [], states

    @torch.library.custom_op(f"{lib}_backward", mutates_args=())
    def backward_op(q: Tensor, k: Tensor, v: Tensor, g: Optional[Tensor], g_gamma: Optional[Tensor],
                    beta: Optional[Tensor], read_logits: Optional[Tensor], write_logits: Optional[Tensor],
                    zs_logits: Optional[Tensor], zs_gate1: Optional[Tensor], zs_gateh: Optional[Tensor],
                    norm_weight: Optional[Tensor], A_log: Optional[Tensor], dt_bias: Optional[Tensor],
                    initial_state: list[Tensor], cu_seqlens: Optional[Tensor], do: Tensor, dht: list[Tensor],
                    states: list[Tensor], scale: float) -> list[Tensor]:
        inputs = _inputs((g, g_gamma, beta, read_logits, write_logits, zs_logits, zs_gate1, zs_gateh, norm_weight,
                          A_log, dt_bias))
        grads = run_backward(kernels, q, k, v, inputs, initial_state, cu_seqlens, scale, do, dht,
                             [d.shape for d in dht], join_state(states))
        out = []
        for name in kernels.grads:
            x = initial_state if name == "initial_state" else {"q": q, "k": k, "v": v, **inputs}.get(name)
            if name == "initial_state":
                dstate = state_parts(grads.get(name)) or [None] * len(initial_state)
                out.extend(torch.zeros_like(p) if d is None else d for d, p in zip(dstate, initial_state))
            elif x is not None:
                out.append(grads[name] if grads.get(name) is not None else torch.zeros_like(x))
        return out

    @backward_op.register_fake
    def _(q, k, v, g, g_gamma, beta, read_logits, write_logits, zs_logits, zs_gate1, zs_gateh, norm_weight, A_log,
          dt_bias, initial_state, cu_seqlens, do, dht, states, scale):
        inputs = _inputs((g, g_gamma, beta, read_logits, write_logits, zs_logits, zs_gate1, zs_gateh, norm_weight,
                          A_log, dt_bias))
        return [torch.empty_like(x) for x in _grad_slots(kernels, q, k, v, inputs, initial_state)]

    def setup_context(ctx, inputs, output):
        q, k, v, *opt = inputs[:3 + len(TENSOR_INPUTS)]
        initial_state, cu_seqlens, scale, _ = inputs[3 + len(TENSOR_INPUTS):]
        ctx.n_state, ctx.n_stored, ctx.scale = len(initial_state), len(output[2]), scale
        ctx.final_shapes = [f.shape for f in output[1]]
        ctx.save_for_backward(q, k, v, *opt, *initial_state, cu_seqlens, *output[2])

    def backward(ctx, do, dfinal, _dstates):
        q, k, v, *rest = ctx.saved_tensors
        stored = rest[len(rest) - ctx.n_stored:]
        rest = rest[:len(rest) - ctx.n_stored]
        opt, state, cu_seqlens = rest[:len(TENSOR_INPUTS)], rest[len(TENSOR_INPUTS):-1], rest[-1]
        dfinal = list(dfinal) if dfinal is not None else [None] * len(ctx.final_shapes)
        dht = []
        if any(d is not None for d in dfinal):
            dht = [torch.zeros(s, dtype=torch.float32, device=v.device) if d is None else d
                   for d, s in zip(dfinal, ctx.final_shapes)]
        if do is None:
            do = torch.zeros_like(v)
        flat = backward_op(q, k, v, *opt, list(state), cu_seqlens, do, dht, list(stored), ctx.scale)
        inputs = _inputs(opt)
        grads, it = {}, iter(flat)
        for name in kernels.grads:
            if name == "initial_state":
                grads[name] = [next(it) for _ in state]
            elif {"q": q, "k": k, "v": v, **inputs}.get(name) is not None:
                grads[name] = next(it)
        dstate = grads.get("initial_state", [None] * len(state))
        return (grads.get("q"), grads.get("k"), grads.get("v"), *(grads.get(n) for n in TENSOR_INPUTS),
                list(dstate), None, None, None)

    forward_op.register_autograd(backward, setup_context=setup_context)
    return CustomAttention(name, forward_op, backward_op)
