"""Autograd for every kernel family: a `torch.autograd.Function` over a forward and a backward launcher.

The layer knows nothing of decays, gates or ZeroS. A family gets autograd by rendering (see
`Differentiable`, and the "backward" plan of `slagen/codegen/families/gated.py` for an example):
- `forward(q, k, v, *, <call convention>, scale) -> (o, final_state)` (its chunked or recurrent launcher);
- `backward(q, k, v, *, <call-convention inputs>, scale, initial_state, cu_seqlens, do, dht) -> dict`
  mapping input names to gradients (None where an input was not given). `do` is dL/do in o's dtype,
  `dht` is dL/dfinal_state (same structure as the state: a tensor or a tuple of tensors) or None when
  the final state was not returned or not used. Both are contiguous. Gradients come in each input's dtype;
  an input the family cannot differentiate must be left out of `GRADS`.
- `GRADS`: a module constant naming the inputs `backward` differentiates (a subset of `q, k, v`,
  `TENSOR_INPUTS` and "initial_state"); anything else gets no gradient.
Recompute vs store: by default this layer saves only the inputs. A backward module that sets
`SAVES_STATES = True` (and `CHUNK_SIZE`) takes `backward(..., states=None)`: the forward launcher is then
called with `save_states_chunk=CHUNK_SIZE` and returns `(o, final_state, states)` (`states` has the
structure of the state: a tensor, or ZeroS's `(kv, stats)` pair), autograd saves `states` and hands them
back. `Differentiable.states_chunk` carries that choice (`stored_states_chunk(module)`); it stays None for a
forward that cannot produce them (the recurrent pass), and the backward recomputes.
Likewise a backward module that sets `SAVES_OUTPUT = True` (the delta family's `epilogue_input` "saved") takes
`backward(..., o_raw=None)`, the forward's output before its epilogue (RMSNorm, read gate): the chunked forward
is then called with `save_raw_output=True` and returns o_raw last (`Differentiable.saves_output`,
`saves_raw_output(module)`). Only a forward under autograd is asked: an inference call writes no o_raw.

torch only (runtime leaf).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch

# The optional tensor inputs of the call convention, in signature order (states and cu_seqlens aside).
TENSOR_INPUTS = ("g", "g_gamma", "beta", "read_logits", "write_logits", "zs_logits", "zs_gate1", "zs_gateh",
                 "norm_weight", "A_log", "dt_bias")


@dataclass(frozen=True)
class Differentiable:
    """One variant's forward launcher, backward launcher and the names of the inputs it differentiates."""

    forward: Callable[..., Any]
    backward: Callable[..., dict]
    grads: tuple[str, ...]
    states_chunk: Optional[int] = None  # ask the forward for its per-chunk states at this chunk size
    saves_output: bool = False  # ask the forward for its output before the epilogue (o_raw)


def stored_states_chunk(backward_module: Any) -> Optional[int]:
    """The chunk size at which a backward module wants the forward's states kept, or None (recompute;
    modules without `SAVES_STATES` recompute)."""
    if getattr(backward_module, "SAVES_STATES", False):
        return int(backward_module.CHUNK_SIZE)
    return None


def saves_raw_output(backward_module: Any) -> bool:
    """Whether a backward module wants the forward's output before its epilogue (modules without
    `SAVES_OUTPUT` recompute it, or have no epilogue)."""
    return bool(getattr(backward_module, "SAVES_OUTPUT", False))


def run_forward(kernels: Differentiable, q, k, v, kwargs: dict) -> tuple[Any, Any, Any, Any]:
    """`kernels.forward` with call-convention keywords -> (o, final_state, per-chunk states or None, o_raw or
    None); the states have the state's structure (a tensor, or a tuple of tensors as ZeroS has)."""
    extra = {} if kernels.states_chunk is None else {"save_states_chunk": kernels.states_chunk}
    if kernels.saves_output:
        extra["save_raw_output"] = True
    outs = list(kernels.forward(q, k, v, **kwargs, **extra))
    o_raw = outs.pop() if kernels.saves_output else None
    states = outs.pop() if kernels.states_chunk is not None else None
    o, final = outs
    return o, final, states, o_raw


def state_parts(state: Any) -> list[torch.Tensor]:
    """A state (None, a tensor, or a tuple of tensors as ZeroS has) as a flat list."""
    if state is None:
        return []
    if isinstance(state, (tuple, list)):
        return list(state)
    return [state]


def join_state(parts: Sequence[torch.Tensor]) -> Any:
    """The inverse of `state_parts`."""
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else tuple(parts)


def needs_grad(q, k, v, kwargs: dict) -> bool:
    """True when autograd is on and any tensor input (state parts included) requires grad."""
    if not torch.is_grad_enabled():
        return False
    tensors = [q, k, v, *(kwargs.get(n) for n in TENSOR_INPUTS), *state_parts(kwargs.get("initial_state"))]
    return any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def run_backward(kernels: Differentiable, q, k, v, inputs: dict, state: Sequence[torch.Tensor], cu_seqlens,
                 scale: float, do: Optional[torch.Tensor], dfinal: Sequence[Optional[torch.Tensor]],
                 final_shapes: Sequence[torch.Size], states: Any = None, o_raw: Optional[torch.Tensor] = None) -> dict:
    """Call the family's backward with materialised, contiguous incoming gradients; cast each gradient to
    its input's dtype. `dfinal`/`final_shapes`: per final-state part (empty when none was returned);
    `states`: the forward's per-chunk states (a tensor or a tuple), `o_raw` its output before the epilogue,
    each passed on only when kept."""
    if do is None:
        do = torch.zeros_like(v)  # o has v's shape and dtype
    dht = None
    if any(d is not None for d in dfinal):
        dht = join_state([(torch.zeros(s, dtype=torch.float32, device=v.device) if d is None else d).contiguous()
                          for d, s in zip(dfinal, final_shapes)])
    extra = {} if states is None else {"states": states}
    if o_raw is not None:
        extra["o_raw"] = o_raw
    grads = kernels.backward(q, k, v, **inputs, scale=scale, initial_state=join_state(list(state)),
                             cu_seqlens=cu_seqlens, do=do.contiguous(), dht=dht, **extra)
    given = {"q": q, "k": k, "v": v, **inputs, "initial_state": join_state(list(state))}
    out = {}
    for name in kernels.grads:
        x, dx = given.get(name), grads.get(name)
        if x is None or dx is None:
            continue
        if isinstance(x, tuple):
            out[name] = tuple(None if d is None else d.to(p.dtype) for d, p in zip(dx, x))
        else:
            out[name] = dx.to(x.dtype)
    return out


class AttentionFunction(torch.autograd.Function):
    """`apply(kernels, scale, output_final_state, cu_seqlens, n_state, q, k, v, *TENSOR_INPUTS values,
    *initial-state parts) -> (o, *final-state parts)`. Saves the inputs, the forward's per-chunk states
    when `kernels.states_chunk` asks for them and its o_raw when `kernels.saves_output` does."""

    @staticmethod
    def forward(ctx, kernels: Differentiable, scale: float, output_final_state: bool, cu_seqlens, n_state: int,
                q, k, v, *rest):
        inputs = dict(zip(TENSOR_INPUTS, rest[:len(TENSOR_INPUTS)]))
        state = list(rest[len(TENSOR_INPUTS):])
        o, final, states, o_raw = run_forward(kernels, q, k, v, dict(
            inputs, scale=scale, initial_state=join_state(state), output_final_state=output_final_state,
            cu_seqlens=cu_seqlens))
        finals = state_parts(final)
        ctx.kernels, ctx.scale, ctx.cu_seqlens = kernels, scale, cu_seqlens
        ctx.final_shapes = [f.shape for f in finals]
        stored = state_parts(states)
        ctx.n_stored, ctx.has_raw = len(stored), o_raw is not None
        ctx.save_for_backward(q, k, v, *rest, *stored, *([] if o_raw is None else [o_raw]))
        ctx.set_materialize_grads(False)
        return (o, *finals)

    @staticmethod
    def backward(ctx, do, *dfinal):
        q, k, v, *rest = ctx.saved_tensors
        o_raw = rest.pop() if ctx.has_raw else None
        states = join_state(rest[len(rest) - ctx.n_stored:])
        rest = rest[:len(rest) - ctx.n_stored]
        inputs = dict(zip(TENSOR_INPUTS, rest[:len(TENSOR_INPUTS)]))
        state = rest[len(TENSOR_INPUTS):]
        grads = run_backward(ctx.kernels, q, k, v, inputs, state, ctx.cu_seqlens, ctx.scale, do, dfinal,
                             ctx.final_shapes, states, o_raw)
        dstate = state_parts(grads.get("initial_state"))
        return (None, None, None, None, None, grads.get("q"), grads.get("k"), grads.get("v"),
                *(grads.get(n) for n in TENSOR_INPUTS), *(dstate or [None] * len(state)))


def apply(kernels: Differentiable, q, k, v, kwargs: dict):
    """Run `kernels.forward` under autograd with call-convention keywords (scale already resolved);
    returns `(o, final_state)` like the launcher."""
    state = state_parts(kwargs.get("initial_state"))
    outs = AttentionFunction.apply(kernels, kwargs["scale"], bool(kwargs.get("output_final_state")),
                                   kwargs.get("cu_seqlens"), len(state), q, k, v,
                                   *(kwargs.get(n) for n in TENSOR_INPUTS), *state)
    o, finals = outs[0], list(outs[1:])
    return o, (join_state(finals) if kwargs.get("output_final_state") else None)
