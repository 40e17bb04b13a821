"""The built-in variants. Each is also shipped as `specs/<name>.toml` (a test keeps the two equal)."""

from __future__ import annotations

from .variant import VariantSpec

_BASE = dict(head_dim_k=128, head_dim_v=128)
# SLA's read gate sits after a fused per-head RMSNorm; "heads" scaling makes a uniform gate the identity.
_SLA = dict(head_gate="read", output_norm="rms", gate_scale="heads")
_ZEROS = dict(zero_sum=True, qk_l2norm=True, head_dim_k=64, head_dim_v=64)

BUILTIN_SPECS: dict[str, VariantSpec] = {
    s.name: s
    for s in (
        VariantSpec("linear", decay="none", description="plain causal linear attention", **_BASE),
        VariantSpec("retnet", decay="fixed", description="RetNet: one fixed decay per head (g_gamma)", **_BASE),
        VariantSpec("mamba2", decay="scalar", description="Mamba2 / simple GLA: data-dependent scalar decay", **_BASE),
        VariantSpec("gla", decay="vector", description="GLA: data-dependent per-channel decay", **_BASE),
        VariantSpec("gdn", decay="delta", qk_l2norm=True, description="Gated DeltaNet", **_BASE),
        VariantSpec("sla_linear", decay="none", description="SLA head gate on linear attention", **_BASE, **_SLA),
        VariantSpec("sla_retnet", decay="fixed", description="SLA head gate on RetNet", **_BASE, **_SLA),
        VariantSpec("sla_mamba2", decay="scalar", description="SLA head gate on Mamba2", **_BASE, **_SLA),
        VariantSpec("sla_gla", decay="vector", description="SLA head gate on GLA", **_BASE, **_SLA),
        VariantSpec("sla_gdn", decay="delta", qk_l2norm=True, description="SLA head gate on Gated DeltaNet",
                    **_BASE, **_SLA),
        VariantSpec("zeros", description="ZeroS zero-sum linear attention", **_ZEROS),
        VariantSpec("zeros_retnet", decay="fixed", zero_sum_decay="consistent",
                    description="experimental: ZeroS with RetNet decay and a decay-consistent measure", **_ZEROS),
        VariantSpec("zeros_mamba2", decay="scalar", zero_sum_decay="consistent",
                    description="experimental: ZeroS with scalar decay and a decay-consistent measure", **_ZEROS),
        VariantSpec("zeros_gla", decay="vector", zero_sum_decay="state",
                    description="experimental: ZeroS with per-channel decay on the states", **_ZEROS),
    )
}

# What `slagen build` ships by default into generated/.
SHIPPED_VARIANTS = tuple(BUILTIN_SPECS)
