"""Where a layer's kernels come from. A layer class names a provider (`kernels`) with one method,
`resolve(layer, head_k_dim, head_v_dim, norm_eps) -> LayerKernels`: a generated package's variant
(`PackageKernels`; its spec fixes the head dims) or a spec compiled on demand (`slagen.layers.JitKernels`)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ... import env
from ...spec import VariantSpec


class LayerKernels:
    """`kernels(kind, q, k, v, **inputs) -> (o, final_state)` for one spec; `kind` is "forward" (chunked) or
    "recurrent" (the step-by-step kernel fla's layers switch to for short inputs)."""

    def __init__(self, spec: VariantSpec, run: Callable[..., Any]) -> None:
        self.spec = spec
        self._run = run

    def __call__(self, kind: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **inputs: Any):
        return self._run(kind, q, k, v, inputs)


def kernels_unavailable(q: torch.Tensor) -> bool:
    return not q.is_cuda and not env.interpreter_mode()


class PackageKernels:
    """The kernels of one variant of a generated package (`KernelPackage`): its spec fixes the head dims and
    the fused norm's eps, so a layer asking for others is refused."""

    def __init__(self, package: Any, variant: str) -> None:
        self.package, self.variant = package, variant

    def resolve(self, layer: str, head_k_dim: int, head_v_dim: int, norm_eps: float) -> LayerKernels:
        spec = self.package.specs[self.variant]
        if (head_k_dim, head_v_dim) != (spec.head_dim_k, spec.head_dim_v):
            raise ValueError(
                f"head dims: {layer} of this package runs variant {self.variant!r}, built for head_dim_k="
                f"{spec.head_dim_k}, head_dim_v={spec.head_dim_v}; the constructor arguments give {head_k_dim}, "
                f"{head_v_dim} (build a spec with these head dims, or use slagen.layers.{layer})")
        if spec.output_norm == "rms" and norm_eps != spec.norm_eps:
            raise ValueError(f"norm_eps: {layer} of this package fuses the per-head norm with eps {spec.norm_eps} "
                             f"(variant {self.variant!r}), got {norm_eps}")

        def run(kind: str, q, k, v, inputs: dict):
            return self.package.call(self.variant, kind, q, k, v, **inputs)

        return LayerKernels(spec, run)
