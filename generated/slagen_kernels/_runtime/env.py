"""Every environment knob slagen reads, in one place."""

from __future__ import annotations

import os
from pathlib import Path


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def interpreter_mode() -> bool:
    """TRITON_INTERPRET=1: Triton kernels run on the CPU through the interpreter."""
    return _flag("TRITON_INTERPRET")


def cache_dir() -> Path:
    """Where rendered kernel sources are cached by content hash (SLAGEN_CACHE_DIR)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "slagen"
    return Path(os.environ.get("SLAGEN_CACHE_DIR", default))


def default_db_url() -> str:
    """The tuning database (SLAGEN_DB): any SQLAlchemy URL; a SQLite file under the cache by default."""
    url = os.environ.get("SLAGEN_DB")
    if url:
        return url
    return f"sqlite:///{cache_dir() / 'tuning.db'}"


def poison_outputs() -> bool:
    """SLAGEN_POISON_OUTPUTS=1 fills outputs with NaN before launch so unwritten elements show."""
    return _flag("SLAGEN_POISON_OUTPUTS")


def check_values() -> bool:
    """SLAGEN_CHECK_VALUES=1: compiled ops and generated packages check input *values* as the reference does
    (log decays in [-inf, 0], beta and ZeroS gates in [0, 1], the rest finite), at the cost of a device sync
    per call; off by default (the fast path). `slagen check` and the test suite turn it on."""
    return _flag("SLAGEN_CHECK_VALUES")


def gpu_override() -> str | None:
    """SLAGEN_GPU names the GPU a generated package dispatches for (testing the fallback chain)."""
    return os.environ.get("SLAGEN_GPU") or None


FP32_PRECISIONS = ("tf32", "tf32x3", "ieee")


def fp32_precision() -> str:
    """SLAGEN_FP32_PRECISION: how the tensor cores multiply fp32 inputs' dot operands. "tf32" (the default:
    10-bit mantissas, fastest), "tf32x3" (three TF32 products per dot, about fp32 accuracy at a third of the
    rate), "ieee" (fp32 FMA, no tensor cores). Read at every call; bf16 / fp16 inputs are unaffected."""
    value = os.environ.get("SLAGEN_FP32_PRECISION", "").strip().lower() or "tf32"
    if value not in FP32_PRECISIONS:
        raise ValueError(f"SLAGEN_FP32_PRECISION: expected one of {', '.join(FP32_PRECISIONS)}, "
                         f"got {os.environ['SLAGEN_FP32_PRECISION']!r}")
    return value
