"""One measurement on a GPU at a time, across processes: tuning workers that share a GPU compile in
parallel and take turns to run (verification and timing), so their timings do not overlap.

stdlib only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path
from typing import Iterator

from .. import env


def lock_path(device_key: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", device_key)[:120] or "gpu"
    visible = re.sub(r"[^0-9,]", "", os.environ.get("CUDA_VISIBLE_DEVICES", ""))  # GPUs a process sees
    return env.cache_dir() / "locks" / f"{name}{'-' + visible if visible else ''}.lock"


@contextlib.contextmanager
def exclusive(device_key: str) -> Iterator[None]:
    """Hold the machine-wide lock of one GPU (an flock: released by the OS if the holder dies)."""
    path = lock_path(device_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
