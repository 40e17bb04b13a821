"""Valid random inputs for any spec, keyed by argument name of the call convention.

Scales are realistic rather than convenient: decays are visible but do not vanish over a few hundred
steps, gates are away from 0 and 1, nothing is all zeros, and a ZeroS initial state is one the reference
itself produced on a random prefix (its Ẽ, P, m, n are mutually consistent).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..spec import VariantSpec

from .attention import attention
from .prepare import accumulation_dtype

ZS_PREFIX_LEN = 8  # tokens run through the reference to make a ZeroS initial state
ZS_LOGIT_STD = 2.0  # spread of ZeroS logits: e^{s} spans a few orders of magnitude, as in trained models


def retnet_log_gammas(heads: int) -> torch.Tensor:
    """RetNet's default per-head decays, in log space: `log(1 - 2^(-5-h))`."""
    return torch.log1p(-torch.pow(2.0, -5.0 - torch.arange(heads, dtype=torch.float64)))


def make_inputs(
    spec: VariantSpec, batch: int, seqlen: int | None, heads: int, *, dtype: torch.dtype = torch.float64,
    device="cpu", seed: int = 0, seqlens=None, with_initial_state: bool = False, requires_grad: bool = False,
    value_heads: int | None = None,
) -> dict:
    """q, k, v and exactly the inputs `spec` needs (plus `norm_weight` for a fused RMSNorm).

    `seqlens` (with `batch=1`) packs sequences along T and adds `cu_seqlens`; `seqlen` must then be None or
    their sum. q, k, v and norm_weight come in `dtype`; gates and states in the accumulation dtype
    (float64 for float64, else fp32), as a caller would keep them. Deterministic in `seed`.
    `value_heads` (grouped value heads, a multiple of `heads`; default `heads`): q and k get `heads` heads,
    v, the gates, logits and states `value_heads`.
    """
    T = seqlen
    if seqlens is not None:
        seqlens = [int(n) for n in seqlens]
        if batch != 1:
            raise ValueError(f"batch: expected 1 with seqlens (sequences are packed along T), got {batch}")
        if seqlen is not None and seqlen != sum(seqlens):
            raise ValueError(f"seqlen: expected None or sum(seqlens)={sum(seqlens)}, got {seqlen}")
        T = sum(seqlens)
    HK = heads
    B, H, K, V = batch, heads if value_heads is None else value_heads, spec.head_dim_k, spec.head_dim_v
    if H < HK or H % HK:
        raise ValueError(f"value_heads: expected None or a multiple of heads={HK}, got {value_heads}")
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    out = {"q": randn(B, T, HK, K), "k": randn(B, T, HK, K), "v": randn(B, T, H, V)}
    needed = spec.required_inputs()
    if "g" in needed:
        # logsigmoid(randn) averages about -0.8; /16 gives e^{-5} over ~100 steps: visible, not vanishing
        out["g"] = F.logsigmoid(randn(B, T, H, K) if spec.decay == "vector" else randn(B, T, H)) / 16
    if spec.delta_gate == "mamba":
        # fla GatedDeltaNet's parameterisation: a ~ N(0, 1), A = e^{A_log} in [0.5, 4], dt_bias near -3 (so
        # softplus(a + dt_bias) ~ 0.05 and g ~ -0.1: decays visible, not vanishing); beta's logits b ~ N(0, 1)
        out["g"] = randn(B, T, H)
        out["A_log"] = torch.log(0.5 + 3.5 * torch.rand(H, generator=gen, dtype=torch.float64))
        out["dt_bias"] = 0.5 * randn(H) - 3.0
    if "g_gamma" in needed:
        out["g_gamma"] = retnet_log_gammas(H)
    if "beta" in needed:
        out["beta"] = randn(B, T, H) if spec.delta_gate == "mamba" else torch.sigmoid(randn(B, T, H))
    for name in ("read_logits", "write_logits"):
        if name in needed:
            out[name] = randn(B, T, H)
    if spec.zero_sum:
        out["zs_logits"] = ZS_LOGIT_STD * randn(B, T, H)
        out["zs_gate1"] = torch.sigmoid(randn(B, T, H))
        out["zs_gateh"] = torch.sigmoid(randn(B, T, H))
    if spec.output_norm == "rms":
        out["norm_weight"] = 1.0 + 0.25 * randn(V)
    if seqlens is not None:
        out["cu_seqlens"] = torch.tensor([0] + list(_cumsum(seqlens)), dtype=torch.int64)
    if with_initial_state:
        N = len(seqlens) if seqlens is not None else B
        out["initial_state"] = _random_state(spec, N, H, gen, seed)

    state_dtype = accumulation_dtype(torch.empty(0, dtype=dtype))
    result = {}
    for name, value in out.items():
        result[name] = _finish(name, value, dtype, state_dtype, device, requires_grad)
    return result


def _cumsum(values):
    total = 0
    for n in values:
        total += n
        yield total


def _random_state(spec: VariantSpec, N: int, H: int, gen: torch.Generator, seed: int):
    K, V = spec.head_dim_k, spec.head_dim_v
    if not spec.zero_sum:
        return torch.randn(N, H, K, V, generator=gen, dtype=torch.float64) / math.sqrt(K)
    prefix = make_inputs(spec, N, ZS_PREFIX_LEN, H, seed=seed + 7919)
    _, state = attention(spec, **prefix, output_final_state=True, method="recurrent")
    return state


def _finish(name, value, dtype, state_dtype, device, requires_grad):
    if name == "cu_seqlens":
        return value.to(device)
    if name == "initial_state":
        parts = value if isinstance(value, tuple) else (value,)
        parts = tuple(p.detach().to(device=device, dtype=state_dtype).requires_grad_(requires_grad) for p in parts)
        return parts if isinstance(value, tuple) else parts[0]
    target = dtype if name in ("q", "k", "v", "norm_weight") else state_dtype
    return value.to(device=device, dtype=target).requires_grad_(requires_grad)
