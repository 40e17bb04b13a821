"""Shared pieces of the gated-family kernel tests: small specs, inputs, compiled ops, comparisons."""

from __future__ import annotations

import dataclasses
import functools

import torch

import slagen
from slagen.reference import attention, make_inputs
from slagen.spec import BUILTIN_SPECS

SMALL = dict(head_dim_k=32, head_dim_v=16)  # K != V, both tiny
VARIANTS = ("linear", "retnet", "mamba2", "gla", "sla_linear", "sla_retnet", "sla_mamba2", "sla_gla")
EXTRA = {
    # write gate on a scalar decay; both gates (tempered, no norm) on RetNet; write gate + qk L2 norm on GLA
    "sla_mamba2_write": dict(base="sla_mamba2", head_gate="write", output_norm="none", gate_scale="none"),
    "sla_retnet_both": dict(base="sla_retnet", head_gate="both", output_norm="none", gate_temperature=2.0),
    "sla_gla_write_l2": dict(base="sla_gla", head_gate="write", qk_l2norm=True),
    # the output norm without a gate (the finishing backward kernel only sums norm_weight's partials)
    "sla_retnet_norm": dict(base="sla_retnet", head_gate="none", gate_scale="none"),
    # dims that are not powers of two (masked K and V blocks)
    "mamba2_odd": dict(base="mamba2", head_dim_k=24, head_dim_v=20),
    "gla_odd": dict(base="gla", head_dim_k=24, head_dim_v=20),
}
# wider than a state pass's [64, 64] tiles (not in the parametrized lists: slow under the interpreter)
WIDE = {"mamba2_wide": dict(base="mamba2", head_dim_k=128, head_dim_v=80)}


@functools.lru_cache(maxsize=None)
def small_spec(name: str):
    if name in EXTRA or name in WIDE:
        fields = dict(EXTRA.get(name) or WIDE[name])
        base = fields.pop("base")
        return dataclasses.replace(BUILTIN_SPECS[base], name=name, **{**SMALL, **fields})
    return dataclasses.replace(BUILTIN_SPECS[name], **SMALL)


@functools.lru_cache(maxsize=None)
def compiled(name: str, config_json: str = "{}"):
    import json

    # the named config as it is: a value the spec's plan does not allow fails the test (ConfigError)
    return slagen.compile(small_spec(name), json.loads(config_json), recurrent_config={"block_v": 16})


def inputs(name: str, B: int, T: int | None, H: int, *, seed: int = 0, seqlens=None, dtype=torch.float32,
           device="cpu") -> tuple[dict, dict]:
    """(kernel inputs in `dtype`, float64 reference inputs) from the same draw, with an initial state."""
    ref = make_inputs(small_spec(name), B, T, H, seed=seed, seqlens=seqlens, with_initial_state=True)
    ker = {}
    for key, x in ref.items():
        if key == "initial_state":
            ker[key] = x.float().to(device)
        elif x.is_floating_point():
            ker[key] = x.to(device=device, dtype=dtype if key in ("q", "k", "v") else torch.float32)
        else:
            ker[key] = x.to(device)
    return ker, ref


def reference(name: str, ref: dict, **kwargs):
    return attention(small_spec(name), **ref, output_final_state=True, method="naive", **kwargs)


def rel_rms(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double().cpu(), want.double().cpu()
    assert torch.isfinite(got).all(), "non-finite values (unwritten outputs are NaN-poisoned)"
    return ((got - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def assert_close(got, want, tol: float) -> None:
    (o, st), (ro, rst) = got, want
    assert o.shape == ro.shape and st.shape == rst.shape
    assert st.dtype == torch.float32
    err_o, err_s = rel_rms(o, ro), rel_rms(st, rst)
    assert err_o < tol and err_s < tol, f"relative RMS: o {err_o:.2e}, final state {err_s:.2e} (tol {tol:g})"
