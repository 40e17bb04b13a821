"""One measurement on a GPU at a time, across processes: tuning workers that share a GPU compile in
parallel and take turns to run (verification and timing), so their timings do not overlap. The same
flock serialises the workers' claims on a shared study (`search.Search`).

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


def lock_path(name: str, *, per_gpu: bool = True) -> Path:
    """The lock file of `name`; a GPU's (`per_gpu`) also names the GPUs this process sees."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:120] or "gpu"
    visible = re.sub(r"[^0-9,]", "", os.environ.get("CUDA_VISIBLE_DEVICES", "")) if per_gpu else ""
    return env.cache_dir() / "locks" / f"{stem}{'-' + visible if visible else ''}.lock"


@contextlib.contextmanager
def file_lock(name: str, *, per_gpu: bool = False) -> Iterator[None]:
    """Hold the machine-wide lock `name` (an flock: released by the OS if the holder dies)."""
    path = lock_path(name, per_gpu=per_gpu)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def exclusive(device_key: str) -> contextlib.AbstractContextManager[None]:
    """Hold the machine-wide lock of one GPU."""
    return file_lock(device_key, per_gpu=True)
