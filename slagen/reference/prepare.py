"""Prologue and epilogue around the recurrences, in the order docs/conventions.md fixes per head:

`qk_l2norm` -> write gate -> recurrence -> `o * scale` -> output RMSNorm -> read gate.

Inside the reference every per-head stream has layout `[N, H, T, D]` (`[N, H, T]` for per-token scalars).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from ..spec import VariantSpec

from ..runtime.validate import LOG_DECAY_FLOOR, default_scale  # one definition, shared with the kernels

L2NORM_EPS = 1e-6


def accumulation_dtype(q: torch.Tensor) -> torch.dtype:
    """float64 stays float64 (the oracle for tests); every other dtype accumulates in fp32."""
    return torch.float64 if q.dtype == torch.float64 else torch.float32


def l2norm(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + L2NORM_EPS)


def head_gate_weights(spec: VariantSpec, logits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`pi = softmax_h(z / tau)` over the head axis of `[B, T, H]` logits, times H with gate_scale="heads"."""
    pi = torch.softmax(logits.to(dtype) / spec.gate_temperature, dim=-1)
    return pi * logits.shape[-1] if spec.gate_scale == "heads" else pi


def rms_norm(o: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + eps)
    return o * weight.to(o.dtype) if weight is not None else o


@dataclass(frozen=True)
class Streams:
    """Per-head inputs after the prologue, `[N, H, T, ...]` in the accumulation dtype."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    lg: torch.Tensor | None = None          # log decay of the state per step, [N, H, T, 1 or K]
    lg_measure: torch.Tensor | None = None  # ZeroS "consistent": log decay of the zero-sum measure, [N, H, T, 1]
    beta: torch.Tensor | None = None        # delta rule strength, [N, H, T]
    s: torch.Tensor | None = None           # ZeroS logits, [N, H, T]
    sig1: torch.Tensor | None = None        # ZeroS first-order gate
    sigh: torch.Tensor | None = None        # ZeroS residual gate

    @property
    def seqlen(self) -> int:
        return self.q.shape[2]

    def select(self, t0: int, t1: int, n: int | None = None) -> "Streams":
        """Positions `t0:t1`, of batch row `n` only when given (one varlen sequence; the batch dim stays)."""
        rows = slice(None) if n is None else slice(n, n + 1)
        parts = {}
        for f in fields(self):
            t = getattr(self, f.name)
            parts[f.name] = None if t is None else t[rows, :, t0:t1]
        return replace(self, **parts)


def _heads_first(x: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """`[B, T, H, ...]` -> `[B, H, T, ...]` in the accumulation dtype."""
    return None if x is None else x.to(dtype).transpose(1, 2)


def log_decay(spec: VariantSpec, B: int, T: int, H: int, g, g_gamma, dtype) -> torch.Tensor | None:
    """Per-step log decay `[B, H, T, 1]` (fixed, scalar, delta) or `[B, H, T, K]` (vector); None without decay."""
    if spec.decay == "none":
        return None
    if spec.decay == "fixed":
        return g_gamma.to(dtype).clamp_min(LOG_DECAY_FLOOR).view(1, H, 1, 1).expand(B, H, T, 1)
    # clamped like the kernels clamp it: exp(floor) vanishes, and cumulative sums stay finite with g = -inf
    lg = _heads_first(g, dtype).clamp_min(LOG_DECAY_FLOOR)
    return lg if spec.decay == "vector" else lg[..., None]


SOFTPLUS_THRESHOLD = 20.0  # torch's default: softplus(x) = x above it (the kernels use the same)


def delta_gate(spec: VariantSpec, g, beta, A_log, dt_bias, dtype: torch.dtype):
    """`(g, beta)` as the delta rule reads them: as given (delta_gate = "direct"), or from fla GatedDeltaNet's
    parameters (delta_gate = "mamba"): g = -e^{A_log} softplus(a + dt_bias) with a passed as g, beta =
    sigmoid(b) with b passed as beta (`A_log`, `dt_bias` per value head, [H])."""
    if spec.delta_gate != "mamba":
        return g, beta
    x = g.to(dtype) + dt_bias.to(dtype)
    g = -torch.exp(A_log.to(dtype)) * torch.nn.functional.softplus(x, threshold=SOFTPLUS_THRESHOLD)
    return g, torch.sigmoid(beta.to(dtype))


def prologue(spec: VariantSpec, q, k, v, *, g=None, g_gamma=None, beta=None, write_logits=None,
             zs_logits=None, zs_gate1=None, zs_gateh=None, A_log=None, dt_bias=None,
             dtype: torch.dtype) -> Streams:
    """Normalise q and k, apply the write gate and lay everything out per head. With grouped value heads
    (v has HV = G * H heads, q and k H) q and k are repeated per group here: value head j reads q/k head
    j // G (fine for a float64 oracle; the kernels index the shared head instead)."""
    B, T, HK, _ = q.shape
    H = v.shape[2]
    q, k = q.to(dtype), k.to(dtype)
    if spec.qk_l2norm:
        q, k = l2norm(q), l2norm(k)
    if H != HK:
        q, k = q.repeat_interleave(H // HK, dim=2), k.repeat_interleave(H // HK, dim=2)
    g, beta = delta_gate(spec, g, beta, A_log, dt_bias, dtype)
    beta = None if beta is None else beta.to(dtype)
    if spec.uses_write_gate:
        pi = head_gate_weights(spec, write_logits, dtype)
        if spec.decay == "delta":
            beta = beta * pi  # k stays unit-norm; the gate scales the write strength instead
        else:
            k = k * pi[..., None]
    lg = log_decay(spec, B, T, H, g, g_gamma, dtype)
    return Streams(
        q=_heads_first(q, dtype), k=_heads_first(k, dtype), v=_heads_first(v, dtype), lg=lg,
        lg_measure=lg if spec.zero_sum_decay == "consistent" else None,
        beta=_heads_first(beta, dtype), s=_heads_first(zs_logits, dtype),
        sig1=_heads_first(zs_gate1, dtype), sigh=_heads_first(zs_gateh, dtype),
    )


def epilogue(spec: VariantSpec, o: torch.Tensor, *, scale, norm_weight, read_logits) -> torch.Tensor:
    """`[N, H, T, V]` recurrence output -> scaled, normalised, read-gated `[B, T, H, V]` (accumulation dtype)."""
    o = o.transpose(1, 2) * (default_scale(spec) if scale is None else scale)
    if spec.output_norm == "rms":
        o = rms_norm(o, norm_weight, spec.norm_eps)
    if spec.uses_read_gate:
        # after the norm: a gate before a per-head norm would be cancelled by it
        o = o * head_gate_weights(spec, read_logits, o.dtype)[..., None]
    return o
