"""`attention(spec, q, k, v, ...)`: the pure-PyTorch ground truth for every variant a spec describes."""

from __future__ import annotations

import torch

from ..spec import VariantSpec

from .delta import delta_chunked, delta_recurrent
from .linear import linear_chunked, linear_naive, linear_recurrent
from .prepare import Streams, accumulation_dtype, epilogue, log_decay, prologue
from ..runtime.validate import CallShape, validate_inputs
from .zeros import empty_state, zero_sum_rows, zeros_chunked, zeros_naive, zeros_recurrent

METHODS = ("naive", "recurrent", "chunked")
DEFAULT_CHUNK_SIZE = 64


def attention(
    spec: VariantSpec, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, g=None, g_gamma=None, beta=None,
    read_logits=None, write_logits=None, zs_logits=None, zs_gate1=None, zs_gateh=None, norm_weight=None,
    A_log=None, dt_bias=None, scale=None, initial_state=None, output_final_state: bool = False, cu_seqlens=None,
    method: str = "naive", chunk_size: int | None = None,
):
    """Reference forward of `spec` with the call convention of docs/conventions.md; returns `(o, final_state)`.

    `method`: "naive" (materialised O(T²) weights; the recurrence for decay="delta"), "recurrent" (one step
    at a time) or "chunked" (the chunk algorithm, `chunk_size` default 64, any T). All three agree to ~1e-12
    in float64 and are differentiable with autograd.

    Precision: float64 inputs are computed in float64; every other dtype accumulates in fp32. `o` comes back
    in v's dtype. The final state comes back in the accumulation dtype (fp32, or float64 for float64 inputs):
    `[N, H, K, V]`, or for ZeroS the tuple `(kv [N, H, 3, K, V], stats [N, H, 4])`; None unless
    `output_final_state`. Inputs are validated first (ValueError naming the argument).
    """
    shape = validate_inputs(
        spec, q, k, v, g=g, g_gamma=g_gamma, beta=beta, read_logits=read_logits, write_logits=write_logits,
        zs_logits=zs_logits, zs_gate1=zs_gate1, zs_gateh=zs_gateh, norm_weight=norm_weight, A_log=A_log,
        dt_bias=dt_bias, scale=scale, initial_state=initial_state, output_final_state=output_final_state,
        cu_seqlens=cu_seqlens,
    )
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if chunk_size is None:
        chunk_size = DEFAULT_CHUNK_SIZE
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected None or an integer >= 1, got {chunk_size!r}")
    dtype = accumulation_dtype(q)
    x = prologue(spec, q, k, v, g=g, g_gamma=g_gamma, beta=beta, write_logits=write_logits, zs_logits=zs_logits,
                 zs_gate1=zs_gate1, zs_gateh=zs_gateh, A_log=A_log, dt_bias=dt_bias, dtype=dtype)
    state = _initial_state(spec, shape, initial_state, dtype, q.device)
    if shape.seq_bounds is None:
        o, final = _run(spec, x, state, method, chunk_size)
    else:
        # varlen: independent sequences, one state row each
        outs, finals = [], []
        for i, (t0, t1) in enumerate(shape.seq_bounds):
            o_i, final_i = _run(spec, x.select(t0, t1, 0), _state_rows(state, i), method, chunk_size)
            outs.append(o_i)
            finals.append(final_i)
        o = torch.cat(outs, dim=2)
        final = (torch.cat([f[0] for f in finals]), torch.cat([f[1] for f in finals])) if spec.zero_sum \
            else torch.cat(finals)
    o = epilogue(spec, o, scale=scale, norm_weight=norm_weight, read_logits=read_logits)
    return o.to(v.dtype), (final if output_final_state else None)


def _initial_state(spec: VariantSpec, shape: CallShape, initial_state, dtype, device):
    N, H, K, V = shape.num_states, shape.heads, shape.head_dim_k, shape.head_dim_v
    if spec.zero_sum:
        if initial_state is None:
            return empty_state(N, H, K, V, dtype, device)
        return tuple(t.to(dtype) for t in initial_state)
    if initial_state is None:
        return torch.zeros(N, H, K, V, dtype=dtype, device=device)
    return initial_state.to(dtype)


def _state_rows(state, i: int):
    if isinstance(state, tuple):
        return tuple(t[i:i + 1] for t in state)
    return state[i:i + 1]


def _run(spec: VariantSpec, x: Streams, state, method: str, chunk_size: int):
    """One batch of equal-length sequences through the family's core."""
    if x.seqlen == 0:
        return x.v, state
    if spec.zero_sum:
        if method == "naive":
            return zeros_naive(x, state)
        if method == "recurrent":
            return zeros_recurrent(x, state)
        return zeros_chunked(x, state, chunk_size)
    if spec.decay == "delta":
        if method == "chunked":
            return delta_chunked(x.q, x.k, x.v, x.lg, x.beta, state, chunk_size)
        return delta_recurrent(x.q, x.k, x.v, x.lg, x.beta, state)  # naive == recurrent for the delta rule
    if method == "naive":
        return linear_naive(x.q, x.k, x.v, x.lg, state)
    if method == "recurrent":
        return linear_recurrent(x.q, x.k, x.v, x.lg, state)
    return linear_chunked(x.q, x.k, x.v, x.lg, state, chunk_size)


def zero_sum_weights(spec: VariantSpec, zs_logits: torch.Tensor, zs_gate1: torch.Tensor, zs_gateh: torch.Tensor,
                     *, g=None, g_gamma=None) -> torch.Tensor:
    """The explicit ZeroS weights `r [B, H, T, T]` (row t = query, column i = key) of a fresh sequence.

    Every row sums to zero. For `zero_sum_decay="consistent"` the measure decay `e^{b_t - b_i}` is part of
    `r` (and `g`/`g_gamma` are needed); for "state" the weights are undecayed (the decay acts on `q̂·k̂`).
    """
    if not spec.zero_sum:
        raise ValueError(f"spec: expected a spec with zero_sum=True, got {spec.name!r} (zero_sum=False)")
    for name, t in (("zs_logits", zs_logits), ("zs_gate1", zs_gate1), ("zs_gateh", zs_gateh)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3 or t.shape != zs_logits.shape:
            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name}: expected a [B, T, H] tensor shaped like zs_logits, got {got}")
    B, T, H = zs_logits.shape
    dtype = accumulation_dtype(zs_logits)
    s, sig1, sigh = (t.to(dtype).transpose(1, 2) for t in (zs_logits, zs_gate1, zs_gateh))
    bm = torch.zeros_like(s)
    if spec.zero_sum_decay == "consistent":
        arg = "g" if spec.decay == "scalar" else "g_gamma"
        if (g if arg == "g" else g_gamma) is None:
            raise ValueError(f"{arg}: required for zero_sum_decay='consistent' (decay={spec.decay!r})")
        bm = log_decay(spec, B, T, H, g, g_gamma, dtype)[..., 0].cumsum(-1)
    state = empty_state(B, H, 1, 1, dtype, s.device)
    return zero_sum_rows(s, sig1, sigh, bm, state)[0]
