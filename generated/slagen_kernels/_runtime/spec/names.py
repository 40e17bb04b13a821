"""The grammar of every string slagen takes from outside, and the names a generated package defines.

Two kinds of rule live here, in one place:
- `check_variant_name` / `check_package_name`: a name becomes a Python identifier in generated code, so it
  must be one, and must not be a keyword or shadow a module (torch, a package's own `layers`, ...);
- `check_generated_names`: the names a build defines per variant (`foo`, `foo_recurrent`, `FooLayer`) must
  not collide across variants (`foo` vs `foo_recurrent`; `a_1` vs `a1`, which give one layer class);
- `TOKENS` and `check_token`: the strict grammar of data strings from tuning records (device and host
  names, versions, hashes, shape buckets, dtypes, plan names), checked where they enter (import, merge,
  tune, build). None of them can hold a quote, a backslash, a brace or a control character.
Pure stdlib: the DB layer, codegen and the CLI all use it.
"""

from __future__ import annotations

import builtins
import keyword
import re
import sys
from typing import Iterable

from .variant import SpecError

_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,62}")
# Module names a package or variant name would shadow: the libraries a generated package imports, its own
# submodules and files, and the standard library.
_PACKAGE_PARTS = frozenset({"layers", "kernels", "tables"})
_LIBRARIES = frozenset({"torch", "triton", "slagen", "numpy", "jinja2", "sqlalchemy", "optuna"})
RESERVED_NAMES = (_PACKAGE_PARTS | _LIBRARIES | frozenset(sys.stdlib_module_names) | frozenset(dir(builtins))
                  | frozenset(keyword.kwlist) | frozenset(keyword.softkwlist))
RECURRENT_SUFFIX = "_recurrent"


def _refuse_reserved(field: str, value: str) -> None:
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        raise SpecError(f"{field}: expected a name that is not a Python keyword, got {value!r}")
    if value in _PACKAGE_PARTS:
        raise SpecError(f"{field}: {value!r} would shadow the generated package's own {value!r}; choose another name")
    if value in RESERVED_NAMES:
        raise SpecError(f"{field}: {value!r} would shadow the Python module or builtin {value!r}; choose another name")


def check_variant_name(value: object, field: str = "name") -> str:
    """A variant name: lowercase identifier (letters, digits, '_', starting with a letter, at most 63
    characters, nothing after it, not even a newline), not a keyword, not shadowing a module or builtin."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise SpecError(f"{field}: expected a lowercase identifier (letters, digits, '_', starting with a letter, "
                        f"at most 63 characters), got {value!r}")
    _refuse_reserved(field, value)
    return value


def check_package_name(value: object, field: str = "--name") -> str:
    """A package name: a Python identifier (any case, ASCII) that is not a keyword and shadows no module."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", value):
        raise SpecError(f"{field}: expected a Python identifier for the package (ASCII letters, digits, '_'), "
                        f"got {value!r}")
    _refuse_reserved(field, value)
    return value


def layer_class_name(variant: str) -> str:
    """The layer class a package defines for a variant: `sla_gla` -> `SlaGlaLayer`."""
    return "".join(part[:1].upper() + part[1:] for part in variant.split("_")) + "Layer"


def generated_names(variant: str) -> dict[str, str]:
    """Every name a generated package defines for one variant, by what it is."""
    return {"function": variant, "recurrent function": variant + RECURRENT_SUFFIX,
            "layer class": layer_class_name(variant)}


def check_generated_names(variants: Iterable[str], package: str | None = None) -> None:
    """Refuse two variants (or a variant and the package) whose generated names collide, naming both."""
    owners: dict[str, str] = {}
    if package is not None:
        owners[package] = f"the package name {package!r}"
    for variant in variants:
        for what, name in generated_names(variant).items():
            mine = f"the {what} {name!r} of variant {variant!r}"
            if name in owners:
                raise SpecError(f"name: {mine} collides with {owners[name]}; rename one of them")
            owners[name] = mine


# --- data strings from tuning records ---------------------------------------------------------------------

class Token:
    """One grammar: a regular expression matched in full, and what it means in words for error messages."""

    def __init__(self, pattern: str, what: str, *, allow_empty: bool = False) -> None:
        self.regex = re.compile(pattern)
        self.what = what
        self.allow_empty = allow_empty

    def matches(self, value: object) -> bool:
        return isinstance(value, str) and ((self.allow_empty and value == "") or bool(self.regex.fullmatch(value)))


_VERSION = r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}"
TOKENS = {
    # "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "x86_64", "cpu (Triton interpreter)"
    "device_name": Token(r"[A-Za-z0-9][A-Za-z0-9 ._()/+,:-]{0,127}",
                         "a device name (letters, digits, spaces and . _ ( ) / + , : -, at most 128)"),
    "compute_capability": Token(r"[0-9]{1,2}\.[0-9]{1,2}[a-z]?", "MAJOR.MINOR like 9.0", allow_empty=True),
    "version": Token(_VERSION, "a version like 2.5.1+cu124 (letters, digits, . + _ -)", allow_empty=True),
    "required_version": Token(_VERSION, "a version like 0.1.0 (letters, digits, . + _ -)"),
    "hash": Token(r"[0-9a-z][0-9a-z-]{0,63}", "a hash (lowercase letters, digits and -, at most 64)"),
    "plan_name": Token(r"[a-z][a-z0-9_]{0,62}\.[a-z_]{1,32}", "VARIANT.OP like sla_gla.forward"),
    "shape_bucket": Token(r"bh[0-9]{1,10}_t[0-9]{1,10}", "a shape bucket like bh32_t4096"),
    "dtype": Token(r"float16|bfloat16|float32|float64", "float16, bfloat16, float32 or float64"),
    "sampler": Token(r"[a-z][a-z0-9_-]{0,31}", "a sampler name like tpe", allow_empty=True),
    "host": Token(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}", "a host name (letters, digits, . _ -)", allow_empty=True),
    "config_key": Token(r"[A-Za-z_][A-Za-z0-9_]{0,63}", "an identifier"),
    "config_text": Token(r"[A-Za-z0-9_.+-]{0,64}", "letters, digits and . _ + - (at most 64)", allow_empty=True),
}


def check_token(kind: str, field: str, value: object) -> str:
    """`value` if it matches grammar `kind`, else ValueError naming the field, the value and the rule."""
    token = TOKENS[kind]
    if not token.matches(value):
        raise ValueError(f"{field}: expected {token.what}, got {value!r}")
    return value  # type: ignore[return-value]
