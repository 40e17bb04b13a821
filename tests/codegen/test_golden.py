"""Golden renders: every op of every built-in variant at its default config, under tests/golden/.

A template change shows up here as a diff to review; `SLAGEN_UPDATE_GOLDEN=1 pytest tests/codegen/test_golden.py`
rewrites them on purpose.
"""

import os
from pathlib import Path

import pytest

from slagen.api import emit
from slagen.codegen import lower
from slagen.spec import BUILTIN_SPECS

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASES = [(name, op) for name, spec in BUILTIN_SPECS.items() for op in sorted(lower(spec))]


@pytest.mark.parametrize("name,op", CASES, ids=[f"{n}.{o}" for n, o in CASES])
def test_golden_render(name, op):
    source = emit(name, op)
    path = GOLDEN / f"{name}.{op}.py"
    if os.environ.get("SLAGEN_UPDATE_GOLDEN") == "1":
        path.write_text(source)
    assert path.exists(), f"{path} missing: run with SLAGEN_UPDATE_GOLDEN=1 to create it"
    assert source == path.read_text(), f"{path.name} changed: review, then SLAGEN_UPDATE_GOLDEN=1 to accept"


def test_no_stale_golden_files():
    expected = {f"{name}.{op}.py" for name, op in CASES}
    assert {p.name for p in GOLDEN.glob("*.py")} == expected
