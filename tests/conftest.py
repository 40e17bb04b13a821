"""Shared test setup (append sections; do not rewrite others').

Kernels: without CUDA, Triton kernels run under the interpreter on CPU tensors (TRITON_INTERPRET=1, set
before triton is imported) and outputs are poisoned with NaN before launch so unwritten elements show.
Tests marked `interpreter` need the interpreter; tests marked `gpu` need CUDA (both skip otherwise).
"""

from __future__ import annotations

import os

import pytest

# --- kernels: interpreter / gpu selection ------------------------------------------------------------------
try:
    import torch

    _HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover - torch is a dependency
    _HAS_CUDA = False
if not _HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("SLAGEN_POISON_OUTPUTS", "1")
# Compiled ops check input values like the reference in every test (issue 12: kernels and reference agree
# on the domain); the fast path without the checks is what users get by default.
os.environ.setdefault("SLAGEN_CHECK_VALUES", "1")


def _interpreting() -> bool:
    from slagen import env

    return env.interpreter_mode()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA (and TRITON_INTERPRET unset)")
    skip_interp = pytest.mark.skip(reason="needs TRITON_INTERPRET=1 (CPU tensors through Triton's interpreter)")
    for item in items:
        if "gpu" in item.keywords and (not _HAS_CUDA or _interpreting()):
            item.add_marker(skip_gpu)
        if "interpreter" in item.keywords and not _interpreting():
            item.add_marker(skip_interp)
