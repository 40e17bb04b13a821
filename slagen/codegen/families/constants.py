"""Spec-derived constants the families share: the SPEC block of every rendered module starts with these
(slagen.codegen.render.constants_block). All ints, floats or bools, named as the kernels' constexprs."""

from __future__ import annotations

from ...spec import VariantSpec
from .axes import next_pow2


def spec_constants(spec: VariantSpec) -> dict:
    return {
        "K": spec.head_dim_k,
        "V": spec.head_dim_v,
        "KP": next_pow2(spec.head_dim_k),  # K padded to a power of two
        "QK_L2NORM": spec.qk_l2norm,
        "USE_NORM": spec.output_norm == "rms",
        "NORM_EPS": float(spec.norm_eps),
        "USE_READ_GATE": spec.uses_read_gate,
        "USE_WRITE_GATE": spec.uses_write_gate,  # v rows (delta: beta) scaled by pi_w, the same outer product
        "INV_TEMP": 1.0 / float(spec.gate_temperature),
        "GATE_TIMES_H": spec.gate_scale == "heads",
    }


def decay_constants(spec: VariantSpec) -> dict:
    """Which decay input a gated or ZeroS kernel reads."""
    return {
        "USE_G": spec.decay == "scalar",  # g [B, T, H]
        "USE_GK": spec.decay == "vector",  # g [B, T, H, K]
        "USE_G_GAMMA": spec.decay == "fixed",  # g_gamma [H]
    }
