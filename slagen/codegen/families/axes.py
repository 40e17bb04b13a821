"""Tunable-axis helpers every family shares: power-of-two block sizes and the chunk-size axis."""

from __future__ import annotations

from ...spec import VariantSpec
from ..plan import Axis, UnsupportedSpec

MIN_BLOCK = 16  # tl.dot needs every dimension >= 16


def next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def pow2_blocks(dim: int) -> tuple[int, ...]:
    """Block sizes 16, 32, ... up to next_pow2(dim)."""
    top = max(MIN_BLOCK, next_pow2(dim))
    return tuple(1 << i for i in range(MIN_BLOCK.bit_length() - 1, top.bit_length()))


def chunk_axis(spec: VariantSpec, allowed: tuple[int, ...]) -> Axis:
    """The chunk sizes a kernel may be tuned over; a spec's fixed chunk size must be one it supports."""
    if spec.chunk_size == "auto":
        return Axis("chunk_size", allowed)
    if spec.chunk_size not in allowed:
        raise UnsupportedSpec(f"chunk_size: {spec.chunk_size} is not generated for spec {spec.name!r} "
                              f"(this kernel allows {list(allowed)} or \"auto\")")
    return Axis("chunk_size", (spec.chunk_size,))


def nearest(axis: Axis, preferred: int) -> int:
    return min(axis.choices, key=lambda c: (abs(c - preferred), c))


# fp32 values of a register-resident [K, BV] state per thread that leave room for the rest of a kernel:
# `slagen aot` (ptxas on sm_90) shows a recurrent kernel holding a 128 x 128 state spill at 4 warps
# (128 values per thread) and none at 8 (64 per thread).
STATE_VALUES_PER_THREAD = 64


def warps_for_state(rows: int, block_v: int, at_least: int, choices: tuple[int, ...]) -> int:
    """The fewest warps (not under `at_least`) that spread a [rows, block_v] fp32 state to at most
    STATE_VALUES_PER_THREAD values per thread; the largest choice when none does."""
    for warps in sorted(choices):
        if warps >= at_least and rows * block_v <= STATE_VALUES_PER_THREAD * 32 * warps:
            return warps
    return max(choices)
