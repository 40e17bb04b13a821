"""Loading specs: built-in names, TOML files, and sets of specs with unique names."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Iterable

from .builtins import BUILTIN_SPECS
from .variant import SpecError, VariantSpec


def spec_from_toml(text: str, *, source: str = "spec TOML") -> VariantSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{source}: not valid TOML ({err})") from None
    except RecursionError:
        raise SpecError(f"{source}: not a spec (nested too deeply)") from None
    return VariantSpec.from_dict(data, source=source)


def spec_to_toml(spec: VariantSpec) -> str:
    """Every field, in declaration order; strings and lists in TOML's JSON-compatible syntax."""
    import json

    lines = []
    for key, value in spec.to_dict().items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = repr(value)
        else:
            text = json.dumps(value)
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def load_spec(name_or_path: str | os.PathLike) -> VariantSpec:
    """A built-in variant name, or the path of a TOML file."""
    key = os.fspath(name_or_path)
    if key in BUILTIN_SPECS:
        return BUILTIN_SPECS[key]
    path = Path(key)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpecError(f"spec: no such file {key!r}")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise SpecError(f"{key}: not UTF-8 text (byte {err.start}); a spec file is TOML in UTF-8") from None
        except OSError as err:
            raise SpecError(f"{key}: cannot read the spec file ({err.strerror or err})") from None
        try:
            return spec_from_toml(text, source=str(path))
        except SpecError as err:
            # every error names the file it came from, so `spec validate a.toml b.toml` says which failed
            raise SpecError(str(err) if str(err).startswith(f"{key}:") or f"in {key}" in str(err)
                            else f"{key}: {err}") from None
    raise SpecError(f"spec: {key!r} is neither a built-in variant ({', '.join(BUILTIN_SPECS)}) nor a TOML file")


def load_specs(names_or_paths: Iterable[str | os.PathLike]) -> list[VariantSpec]:
    """Several specs; two with the same name are refused (they would share generated function names)."""
    specs: list[VariantSpec] = []
    seen: dict[str, str] = {}
    for item in names_or_paths:
        spec = load_spec(item)
        if spec.name in seen:
            raise SpecError(f"name: duplicate variant name {spec.name!r} (from {os.fspath(item)!r} and {seen[spec.name]!r})")
        seen[spec.name] = os.fspath(item)
        specs.append(spec)
    return specs
