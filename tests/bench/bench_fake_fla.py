"""A CPU stand-in for the three fla entry points slagen.bench calls, with fla's signatures (read from the fla-core 0.6.0 wheel:
`fla/ops/simple_gla/chunk.py`, `fla/ops/gla/chunk.py`, `fla/ops/gated_delta_rule/chunk.py`) and no
**kwargs, so a keyword fla does not take fails here too. Computes with slagen's reference; records calls."""

from __future__ import annotations

import sys
import types

from slagen.reference import attention
from slagen.spec import VariantSpec

CALLS: list[tuple[str, dict]] = []


def _spec(decay: str, K: int, V: int, qk_l2norm: bool = False) -> VariantSpec:
    return VariantSpec(name="fake_fla", decay=decay, head_dim_k=K, head_dim_v=V, qk_l2norm=qk_l2norm)


def chunk_simple_gla(q, k, v, g=None, g_gamma=None, scale=None, initial_state=None, output_final_state=False,
                     state_v_first=False, cu_seqlens=None, cu_seqlens_cpu=None):
    CALLS.append(("chunk_simple_gla", {"g": g is not None, "g_gamma": g_gamma is not None, "scale": scale}))
    assert g is None or g_gamma is None, "fla: only one of g or g_gamma"
    decay = "scalar" if g is not None else "fixed" if g_gamma is not None else "none"
    scale = k.shape[-1] ** -0.5 if scale is None else scale
    extra = {"g": g} if g is not None else {"g_gamma": g_gamma} if g_gamma is not None else {}
    o, state = attention(_spec(decay, q.shape[-1], v.shape[-1]), q, k, v, **extra, scale=scale,
                         output_final_state=output_final_state, method="chunked")
    return o.to(q.dtype), state


def chunk_gla(q, k, v, g, scale=None, initial_state=None, output_final_state=False, state_v_first=False,
              cu_seqlens=None, cu_seqlens_cpu=None):
    CALLS.append(("chunk_gla", {"scale": scale}))
    assert q.shape == k.shape == g.shape, "fla: q, k, g must have the same shape."
    scale = k.shape[-1] ** -0.5 if scale is None else scale
    o, state = attention(_spec("vector", q.shape[-1], v.shape[-1]), q, k, v, g=g, scale=scale,
                         output_final_state=output_final_state, method="chunked")
    return o.to(q.dtype), state


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                           use_qk_l2norm_in_kernel=False, use_beta_sigmoid_in_kernel=False, allow_neg_eigval=False,
                           state_v_first=False, cu_seqlens=None, cu_seqlens_cpu=None):
    CALLS.append(("chunk_gated_delta_rule", {"scale": scale, "use_qk_l2norm_in_kernel": use_qk_l2norm_in_kernel,
                                             "beta_dtype": beta.dtype, "q_dtype": q.dtype}))
    assert q.dtype == k.dtype == v.dtype
    scale = k.shape[-1] ** -0.5 if scale is None else scale
    o, state = attention(_spec("delta", q.shape[-1], v.shape[-1], use_qk_l2norm_in_kernel), q, k, v, g=g, beta=beta,
                         scale=scale, output_final_state=output_final_state, method="chunked")
    return o.to(q.dtype), state


def install(monkeypatch) -> None:
    """Put the stand-in where `import fla.ops...` finds it and let slagen.bench use it on the CPU."""
    import slagen.bench.peers

    CALLS.clear()
    modules = {
        "fla": types.ModuleType("fla"),
        "fla.ops": types.ModuleType("fla.ops"),
        "fla.ops.simple_gla": types.ModuleType("fla.ops.simple_gla"),
        "fla.ops.gla": types.ModuleType("fla.ops.gla"),
        "fla.ops.gated_delta_rule": types.ModuleType("fla.ops.gated_delta_rule"),
    }
    modules["fla"].__version__ = "0.0.0-fake"
    modules["fla"].ops = modules["fla.ops"]
    modules["fla.ops.simple_gla"].chunk_simple_gla = chunk_simple_gla
    modules["fla.ops.gla"].chunk_gla = chunk_gla
    modules["fla.ops.gated_delta_rule"].chunk_gated_delta_rule = chunk_gated_delta_rule
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(slagen.bench.peers, "FLA_NEEDS_CUDA", False)
