"""Shared cases for the reference tests: shrunk built-in specs, extra combinations, comparison helpers."""

from __future__ import annotations

import dataclasses

import torch

from slagen.spec import BUILTIN_SPECS, VariantSpec

K, V = 16, 24  # V != K on purpose


def shrink(spec: VariantSpec, k: int = K, v: int = V) -> VariantSpec:
    return dataclasses.replace(spec, head_dim_k=k, head_dim_v=v)


BUILTINS = {name: shrink(spec) for name, spec in BUILTIN_SPECS.items()}

# Combinations the built-ins do not cover: write / both gates on every family, temperatures, gate
# scales, ZeroS with a read gate and norm, "state" decay on scalar decays, l2norm toggled.
EXTRA = {
    s.name: shrink(s)
    for s in (
        VariantSpec("w_linear", decay="none", head_gate="write", gate_temperature=0.7),
        VariantSpec("w_retnet", decay="fixed", head_gate="write", gate_scale="heads"),
        VariantSpec("w_mamba2", decay="scalar", head_gate="write", qk_l2norm=True),
        VariantSpec("w_gla", decay="vector", head_gate="write", gate_temperature=2.0),
        VariantSpec("w_gdn", decay="delta", head_gate="write", qk_l2norm=True),
        VariantSpec("both_mamba2", decay="scalar", head_gate="both", gate_scale="heads"),
        VariantSpec("both_gdn", decay="delta", head_gate="both", qk_l2norm=True, output_norm="rms"),
        VariantSpec("read_gla", decay="vector", head_gate="read", gate_temperature=0.5),
        VariantSpec("sla_zeros", zero_sum=True, qk_l2norm=True, head_gate="read", output_norm="rms",
                    gate_scale="heads"),
        VariantSpec("zeros_raw", zero_sum=True, qk_l2norm=False),
        VariantSpec("zeros_retnet_state", decay="fixed", zero_sum=True, zero_sum_decay="state", qk_l2norm=True),
        VariantSpec("zeros_mamba2_state", decay="scalar", zero_sum=True, zero_sum_decay="state", qk_l2norm=True),
    )
}

ALL = {**BUILTINS, **EXTRA}
ZEROS = {name: s for name, s in ALL.items() if s.zero_sum}


def flat(state) -> torch.Tensor:
    """A final state (tensor or ZeroS tuple) as one flat tensor, for comparisons."""
    if isinstance(state, tuple):
        return torch.cat([t.flatten() for t in state])
    return state.flatten()


def assert_close(actual, expected, tol: float = 1e-10) -> None:
    torch.testing.assert_close(actual, expected, atol=tol, rtol=tol)
