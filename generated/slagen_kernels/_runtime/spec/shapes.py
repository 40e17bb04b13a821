"""Problem shapes and the shape-bucket rule that tuning tables are keyed by."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .variant import SpecError

_SHAPE_RE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*$")
MIN_T_BUCKET = 64
MAX_T_BUCKET = 1 << 20


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class ProblemShape:
    """`batch x seqlen x heads`; K and V come from the spec. For varlen, `batch` counts sequences."""

    batch: int
    seqlen: int
    heads: int

    def __post_init__(self) -> None:
        for name in ("batch", "seqlen", "heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"shape.{name}: expected an integer >= 1, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> "ProblemShape":
        match = _SHAPE_RE.match(text)
        if not match:
            raise SpecError(f"shapes: expected BxTxH like 2x4096x16, got {text!r}")
        return cls(*(int(g) for g in match.groups()))

    def __str__(self) -> str:
        return f"{self.batch}x{self.seqlen}x{self.heads}"


def parse_shapes(text: str) -> list[ProblemShape]:
    items = [part for part in text.split(",") if part.strip()]
    if not items:
        raise SpecError(f"shapes: expected a comma-separated list of BxTxH, got {text!r}")
    return [ProblemShape.parse(part) for part in items]


def shape_bucket(batch_heads: int, seqlen: int) -> str:
    """Round `B*H` and `T` up to powers of two: configs tuned on one shape serve its bucket.

    `T` is clamped to [64, 2^20] so short and very long sequences share their edge buckets.
    """
    if batch_heads < 1 or seqlen < 1:
        raise SpecError(f"shape bucket: expected B*H >= 1 and T >= 1, got B*H={batch_heads}, T={seqlen}")
    t = min(max(_next_pow2(seqlen), MIN_T_BUCKET), MAX_T_BUCKET)
    return f"bh{_next_pow2(batch_heads)}_t{t}"


def bucket_of(shape: ProblemShape) -> str:
    return shape_bucket(shape.batch * shape.heads, shape.seqlen)
