"""Load rendered kernel source as a Python module.

Triton's `@jit` reads the kernel source through `inspect`, so a rendered module must live in a real file:
it is written once under the cache directory, named by the hash of its content (atomic write), and
imported under a unique module name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

from .. import env

_LOCK = threading.Lock()
_MODULES: dict[str, ModuleType] = {}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def import_file(path: Path, module_name: str, *, package: bool = False) -> ModuleType:
    """Import one file as `module_name` (a package's `__init__.py` with `package`, so its submodules import)."""
    locations = [str(path.parent)] if package else None
    spec = importlib.util.spec_from_file_location(module_name, path, submodule_search_locations=locations)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import a module from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def source_digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:20]


def source_file(source: str) -> Path:
    """The file under the cache directory that holds `source`, named by its hash (written once, atomically)."""
    path = env.cache_dir() / "kernels" / f"k_{source_digest(source)}.py"
    if not path.exists() or path.read_text() != source:
        _write_atomic(path, source)
    return path


def load_source(source: str) -> ModuleType:
    """Import rendered source (memoised by content hash)."""
    digest = source_digest(source)
    with _LOCK:
        if digest not in _MODULES:
            _MODULES[digest] = import_file(source_file(source), f"slagen_kernels_{digest}")
        return _MODULES[digest]
