"""fla-compatible layers for users who do not build a package: the same classes as a generated package's
`<package>.layers`, over the built-in variants compiled on demand (`slagen.compile`'s just-in-time path, once per
head-dim combination) for the head dims the constructor arguments give.

    from slagen.layers import GatedDeltaNet, SlaGatedDeltaNet, ZeroSAttention, Cache
    layer = GatedDeltaNet(hidden_size=512, head_dim=64, num_heads=4, layer_idx=0)   # as fla.layers.GatedDeltaNet
    o, _, cache = layer(x, attention_mask=mask, past_key_values=Cache(), use_cache=True)

Importing this module needs torch only; the first layer constructed renders and loads its kernels. On CPU
tensors without TRITON_INTERPRET=1 the layers run the PyTorch reference (logged once).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from ..runtime.layers import Cache, LayerKernels
from ..runtime.layers import gdn, gla, linear, retention, simple_gla, zeros
from ..runtime.dispatch import log_once
from ..runtime.layers.kernels import kernels_unavailable


def reference_when_no_kernels(spec, kind: str, q, k, v, inputs: dict):
    """CPU tensors without TRITON_INTERPRET: the PyTorch reference (slow), with a warning logged once."""
    log_once(spec.name, "reference", message=(
        f"slagen: {spec.name} got CPU tensors and TRITON_INTERPRET is not set; using the PyTorch reference "
        "(slow). Move the tensors to a GPU, or set TRITON_INTERPRET=1 to run the kernels."))
    from ..reference import attention

    return attention(spec, q, k, v, method="chunked" if kind == "forward" else "recurrent", **inputs)


class JitKernels:
    """A built-in variant, re-specified with the layer's head dims (and its norm eps when the spec fuses the
    per-head norm), compiled on first use and shared by every layer asking for the same spec."""

    _compiled: dict[Any, Any] = {}
    _lock = threading.Lock()

    def __init__(self, variant: str, **fields: Any) -> None:
        # `fields`: spec fields set on the built-in (GatedDeltaNet: delta_gate = "mamba", its gate in the kernels)
        self.variant, self.fields = variant, fields

    def resolve(self, layer: str, head_k_dim: int, head_v_dim: int, norm_eps: float) -> LayerKernels:
        from ..spec import BUILTIN_SPECS, SpecError

        base = BUILTIN_SPECS[self.variant]
        changes: dict[str, Any] = dict(self.fields, head_dim_k=head_k_dim, head_dim_v=head_v_dim)
        if base.output_norm == "rms":
            changes["norm_eps"] = float(norm_eps)
        try:
            spec = dataclasses.replace(base, **changes)
        except SpecError as err:
            raise ValueError(f"head dims: {layer} gives head_k_dim={head_k_dim}, head_v_dim={head_v_dim}; "
                             f"slagen's kernels take {err}") from None

        # compiled here, not at the first call: torch.compile then traces the call without a lock or a cache
        # look-up in its way (fullgraph=True holds)
        op = self.compiled(spec)

        def run(kind: str, q, k, v, inputs: dict):
            spec_now, op_now = spec, op
            if spec.delta_gate != "direct" and "A_log" not in inputs:
                # g and beta themselves (the layer computes them under context parallelism): the direct form
                spec_now = dataclasses.replace(spec, delta_gate="direct")
                op_now = self.compiled(spec_now)
            if kernels_unavailable(q):
                return reference_when_no_kernels(spec_now, kind, q, k, v, inputs)
            return (op_now if kind == "forward" else op_now.recurrent)(q, k, v, **inputs)

        return LayerKernels(spec, run)

    @classmethod
    def compiled(cls, spec):
        with cls._lock:
            if spec not in cls._compiled:
                from ..jit import compile_op

                cls._compiled[spec] = compile_op(spec)
            return cls._compiled[spec]


class LinearAttention(linear.LinearAttention):
    """fla's `LinearAttention` (spec `linear`)."""
    kernels = JitKernels("linear")


class MultiScaleRetention(retention.MultiScaleRetention):
    """fla's `MultiScaleRetention` (spec `retnet`)."""
    kernels = JitKernels("retnet")


class SimpleGatedLinearAttention(simple_gla.SimpleGatedLinearAttention):
    """fla's `SimpleGatedLinearAttention` (spec `mamba2`: scalar decay)."""
    kernels = JitKernels("mamba2")


class GatedLinearAttention(gla.GatedLinearAttention):
    """fla's `GatedLinearAttention` (spec `gla`)."""
    kernels = JitKernels("gla")


class GatedDeltaNet(gdn.GatedDeltaNet):
    """fla's `GatedDeltaNet` (spec `gdn` with delta_gate = "mamba": its gate computed in the kernels)."""
    kernels = JitKernels("gdn", delta_gate="mamba")


class SlaLinearAttention(linear.LinearAttention):
    """`LinearAttention` with the SLA read gate (spec `sla_linear`); equals the base layer at init."""
    kernels = JitKernels("sla_linear")


class SlaMultiScaleRetention(retention.MultiScaleRetention):
    """`MultiScaleRetention` with the SLA read gate (spec `sla_retnet`); equals the base layer at init."""
    kernels = JitKernels("sla_retnet")


class SlaSimpleGatedLinearAttention(simple_gla.SimpleGatedLinearAttention):
    """`SimpleGatedLinearAttention` with the SLA read gate (spec `sla_mamba2`); equals the base layer at init."""
    kernels = JitKernels("sla_mamba2")


class SlaGatedLinearAttention(gla.GatedLinearAttention):
    """`GatedLinearAttention` with the SLA read gate (spec `sla_gla`); equals the base layer at init."""
    kernels = JitKernels("sla_gla")


class SlaGatedDeltaNet(gdn.GatedDeltaNet):
    """`GatedDeltaNet` with the SLA read gate (spec `sla_gdn`, delta_gate = "mamba"); equals the base layer at
    init."""
    kernels = JitKernels("sla_gdn", delta_gate="mamba")


class ZeroSAttention(zeros.ZeroSAttention):
    """The ZeroS authors' layer (spec `zeros`)."""
    kernels = JitKernels("zeros")


__all__ = ["Cache", "GatedDeltaNet", "GatedLinearAttention", "JitKernels", "LinearAttention", "MultiScaleRetention",
           "SimpleGatedLinearAttention", "SlaGatedDeltaNet", "SlaGatedLinearAttention", "SlaLinearAttention",
           "SlaMultiScaleRetention", "SlaSimpleGatedLinearAttention", "ZeroSAttention"]
