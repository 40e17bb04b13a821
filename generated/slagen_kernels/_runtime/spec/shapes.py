"""Problem shapes and the shape-bucket rule that tuning tables are keyed by."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .variant import SpecError

_SHAPE_RE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*$")
MIN_T_BUCKET = 64
MAX_T_BUCKET = 1 << 20
# Bounds of a problem shape: far above any real workload, low enough that a typo (an extra digit or three)
# is an error rather than a tuning run that allocates terabytes.
SHAPE_LIMITS = {"batch": 1 << 16, "seqlen": 1 << 24, "heads": 1 << 12}
MAX_ROWS = 1 << 31  # batch * seqlen * heads


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
            if value > SHAPE_LIMITS[name]:
                raise SpecError(f"shape.{name}: expected at most {SHAPE_LIMITS[name]}, got {value}")
        if self.batch * self.seqlen * self.heads > MAX_ROWS:
            raise SpecError(f"shape: expected batch x seqlen x heads <= 2^31, got {self}"
                            f" = {self.batch * self.seqlen * self.heads}")

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
