"""Helpers for the tuning tests: small synthetic plans (no kernel family needed) and stores."""

from __future__ import annotations

from slagen.codegen import Axis, KernelPlan
from slagen.codegen.render import templates_dir
from slagen.spec import ProblemShape, VariantSpec

SPEC = VariantSpec("tune_toy", decay="fixed", head_dim_k=64, head_dim_v=64, dtypes=("bfloat16",))
SHAPE = ProblemShape(2, 1024, 8)


def any_template() -> str:
    return sorted(p.name for p in templates_dir().iterdir() if p.name.endswith(".py.jinja"))[0]


def toy_plan(op: str = "forward") -> KernelPlan:
    """24 configs: three chunk sizes, two V tiles, two warp counts, an enum axis."""
    axes = (
        Axis("chunk_size", (16, 32, 64)),
        Axis("block_v", (32, 64)),
        Axis("num_warps", (2, 4)),
        Axis("algo", ("scan", "fused")),
    )
    default = {"chunk_size": 64, "block_v": 64, "num_warps": 4, "algo": "scan"}
    return KernelPlan(SPEC, op, any_template(), axes, default)


OPTIMUM = {"chunk_size": 32, "block_v": 32, "num_warps": 2, "algo": "fused"}
