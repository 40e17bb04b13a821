"""Golden renders: every op of every built-in variant at its default config equals the kernel module that
generated/ ships for it (its default config id in tables.json), but for the tuning-record lines the build
adds to a module's header and its import of the runtime (`slagen.codegen.standalone`). generated/ is the
one committed copy of the default renders: a template change shows up here as a diff to review, and
`bash scripts/main.sh` (or `slagen build --tuning-dir tuning_db --gpu all --no-tune --out generated`)
rewrites it on purpose. Every built-in variant is shipped, so every default
render has its golden file."""

import json
from pathlib import Path

import pytest

from slagen.api import emit
from slagen.codegen import lower
from slagen.codegen.standalone import KERNEL_IMPORT, PACKAGE_KERNEL_IMPORT
from slagen.spec import BUILTIN_SPECS, SHIPPED_VARIANTS

PACKAGE = Path(__file__).resolve().parents[2] / "generated" / "slagen_kernels"
TABLES = json.loads((PACKAGE / "tables.json").read_text())
CASES = [(name, op) for name, spec in BUILTIN_SPECS.items() for op in sorted(lower(spec))]


def shipped_default(name: str, op: str) -> str:
    variant = TABLES["variants"][name]
    module = variant["configs"][variant["ops"][op]["default"]]["module"]
    lines = (PACKAGE / module).read_text().replace(PACKAGE_KERNEL_IMPORT, KERNEL_IMPORT).split("\n")
    return "\n".join(line for line in lines if not line.startswith("# tuning record: "))


def test_every_builtin_variant_is_shipped():
    assert sorted(SHIPPED_VARIANTS) == sorted(BUILTIN_SPECS) == sorted(TABLES["variants"])


@pytest.mark.parametrize("name,op", CASES, ids=[f"{n}.{o}" for n, o in CASES])
def test_default_render_equals_generated(name, op):
    assert emit(name, op) == shipped_default(name, op), (
        f"{name}.{op} differs from generated/: review, then `bash scripts/main.sh` to rebuild it")
