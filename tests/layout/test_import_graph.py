"""The import rules of docs/imports.md, checked on every module of slagen/: each `import` and
`from ... import` (at the top or inside a function, parsed with `ast`, nothing imported) must be an
allowed edge between slagen's parts, or a library the importing part may use."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "slagen"

# slagen part -> the slagen parts it may import ("slagen" is the package root: `__version__` only)
ALLOWED_PARTS = {
    "spec": set(),
    "env": set(),
    "identity": set(),
    "runtime": {"spec", "env", "identity"},
    "reference": {"spec", "runtime"},
    "codegen": {"slagen", "spec"},
    "db": {"slagen", "env", "identity", "spec"},
    "jit": {"spec", "codegen", "runtime"},
    "tuning": {"slagen", "spec", "env", "identity", "reference", "runtime", "codegen", "jit", "db"},
    "bench": {"slagen", "spec", "reference", "runtime"},
    "layers": {"spec", "runtime", "reference", "jit"},
    "cp": {"runtime"},
    "api": {"slagen", "spec", "env", "identity", "reference", "runtime", "codegen", "jit", "db", "tuning", "bench"},
    "cli": {"slagen", "spec", "env", "identity", "runtime", "codegen", "db", "tuning", "bench", "api"},
    "slagen": set(),
}
# single modules a part may import beyond ALLOWED_PARTS: the builder writes the table the runtime reads
ALLOWED_MODULES = {"codegen": {"slagen.runtime.dispatch"}}
# slagen part -> the libraries beyond the standard library it may import
ALLOWED_LIBRARIES = {
    "spec": set(),
    "env": set(),
    "identity": set(),
    "runtime": {"torch", "triton"},
    "reference": {"torch"},
    "codegen": {"jinja2"},
    "db": {"sqlalchemy", "alembic"},
    "jit": set(),
    "tuning": {"torch", "triton", "optuna", "cmaes", "sqlalchemy", "pynvml"},
    "bench": {"torch", "triton", "fla"},
    "layers": {"torch"},
    "cp": {"torch"},
    "api": {"torch", "triton", "sqlalchemy"},
    "cli": {"click", "rich", "torch"},
    "slagen": set(),
}


def _part(module: str) -> str:
    """`slagen.tuning.search` -> `tuning`; `slagen.api` -> `api`; `slagen` -> `slagen`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "slagen"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    path = ROOT.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """Absolute names of what one file imports: modules, or the package a name was taken from."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from .. import env` imports a module, `from .. import __version__` a name
                found.add(f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base)
    return found


def violations(path: Path) -> list[str]:
    importer = _part(_module_name(path))
    bad = []
    for name in sorted(imports_of(path)):
        top = name.split(".")[0]
        if top == "slagen":
            target = _part(name)
            if target != importer and target not in ALLOWED_PARTS[importer] \
                    and name not in ALLOWED_MODULES.get(importer, ()):
                bad.append(f"{path.relative_to(ROOT.parent)}: {importer} may not import slagen.{target} ({name})")
        elif top not in sys.stdlib_module_names and top not in ALLOWED_LIBRARIES[importer] and top != "__future__":
            bad.append(f"{path.relative_to(ROOT.parent)}: {importer} may not import {top}")
    return bad


def test_every_part_of_slagen_has_rules():
    parts = {_part(_module_name(p)) for p in ROOT.rglob("*.py")}
    assert parts == set(ALLOWED_PARTS) == set(ALLOWED_LIBRARIES)


def test_imports_follow_the_rules():
    bad = [line for path in sorted(ROOT.rglob("*.py")) for line in violations(path)]
    assert not bad, "import rules (docs/imports.md) broken:\n" + "\n".join(bad)


def test_the_parts_form_no_cycle():
    """Allowed edges alone must be acyclic, so no two parts can end up importing each other."""
    state: dict[str, int] = {}

    def visit(part: str, trail: tuple[str, ...]) -> None:
        if state.get(part) == 1:
            pytest.fail("import cycle allowed: " + " -> ".join(trail + (part,)))
        if state.get(part) == 2:
            return
        state[part] = 1
        for other in ALLOWED_PARTS[part] - {"slagen"}:
            visit(other, trail + (part,))
        state[part] = 2

    for part in ALLOWED_PARTS:
        visit(part, ())


def test_the_checker_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    """A function-level relative import of a forbidden part is caught (the rule can fail)."""
    fake = tmp_path / "slagen" / "bench"
    fake.mkdir(parents=True)
    (tmp_path / "slagen" / "__init__.py").write_text("")
    (tmp_path / "slagen" / "api.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "peers.py").write_text("def f():\n    from ..api import compile\n    import optuna\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path / "slagen")
    assert violations(fake / "peers.py") == ["slagen/bench/peers.py: bench may not import optuna",
                                             "slagen/bench/peers.py: bench may not import slagen.api (slagen.api)"]
