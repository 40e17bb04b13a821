"""slagen: spec -> Jinja templates -> tuned Triton kernels for linear attention with SLA and ZeroS.

Attributes load lazily so that importing slagen (or a generated package) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "VariantSpec": ("slagen.spec", "VariantSpec"),
    "SpecError": ("slagen.spec", "SpecError"),
    "load_spec": ("slagen.spec", "load_spec"),
    "BUILTIN_SPECS": ("slagen.spec", "BUILTIN_SPECS"),
    "reference": ("slagen.reference", None),
    "compile": ("slagen.api", "compile"),
    "cp": ("slagen.cp", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'slagen' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
