"""What `slagen bench` returns (dataclasses, JSON via `to_dict`), its errors and its tolerances."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from ..spec import SpecError

PEERS = ("fla", "sdpa", "reference", "slagen_base", "authors")
DEFAULT_VS = ("fla", "sdpa")
DTYPE_ALIASES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
                 "half": "float16", "float32": "float32", "fp32": "float32", "float": "float32"}
# Relative-RMS tolerance of outputs against the float64 reference, by input dtype; gradients get GRAD_FACTOR x.
TOLERANCE = {"float32": 5e-3, "bfloat16": 3e-2, "float16": 1.5e-2}
GRAD_FACTOR = 2.0
# Inputs that are differentiated in the forward+backward run (g_gamma is a constant per head).
DIFFERENTIABLE = ("q", "k", "v", "g", "beta", "read_logits", "write_logits", "zs_logits", "zs_gate1", "zs_gateh",
                  "norm_weight", "A_log", "dt_bias")
# Inputs without batch and time axes (one value per head or per channel): never sliced.
PER_HEAD = ("g_gamma", "norm_weight", "A_log", "dt_bias")
SDPA_CHECK_SEQLEN = 512  # the float64 softmax reference materialises T x T per head
CPU_NOTE = ("CPU run (Triton interpreter, allow_cpu=True): exercises the plumbing only; "
            "these times mean nothing about kernel speed")


class BenchError(SpecError):
    """A mistake in what was asked for (unknown peer, bad dtype, no GPU without allow_cpu)."""


class Unavailable(Exception):
    """A peer that cannot run here; the message says why."""


# --- results -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PeerResult:
    """One implementation on one shape. Times in ms (median), memory in MiB beyond what was live before."""

    peer: str  # "slagen" or one of PEERS
    impl: str  # what ran, e.g. "fla.ops.gla.chunk_gla"
    status: str  # ok | mismatch | error | unavailable (of the forward; no timing unless ok)
    reason: str = ""  # why unavailable / the error / the mismatch
    fwd_ms: Optional[float] = None
    fwdbwd_ms: Optional[float] = None
    bwd_status: str = "n/a"  # ok | n/a | mismatch | error | skipped
    bwd_reason: str = ""
    fwd_error: Optional[float] = None  # relative RMS vs the float64 reference (check slice)
    grad_error: Optional[float] = None  # worst relative RMS over the differentiated inputs (grad slice)
    peak_fwd_mib: Optional[float] = None
    peak_fwdbwd_mib: Optional[float] = None
    fwd_ratio: Optional[float] = None  # this / slagen: > 1 means slagen is faster
    fwdbwd_ratio: Optional[float] = None
    note: str = ""

    @property
    def timed(self) -> bool:
        return self.fwd_ms is not None


@dataclass(frozen=True)
class ShapeResult:
    shape: str  # BxTxH
    batch: int
    seqlen: int
    heads: int
    head_dim_k: int
    head_dim_v: int
    io_bytes: int  # bytes of the inputs the variant reads plus the output it writes (the memory floor's numerator)
    check_seqlen: int  # forward check: the first this many tokens of the first and last batch row
    grad_check_seqlen: int
    rows: list[PeerResult] = field(default_factory=list)

    def row(self, peer: str) -> Optional[PeerResult]:
        return next((r for r in self.rows if r.peer == peer), None)


@dataclass(frozen=True)
class BenchReport:
    variant: str
    spec_hash: str
    dtype: str
    device: str
    meaningful: bool  # False for CPU runs: plumbing only
    note: str
    versions: dict[str, str]
    timing: dict[str, Any]  # how times were taken
    shapes: list[ShapeResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
