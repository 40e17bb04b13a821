"""Class 4 of issue 12: names that would give a broken or misleading package are refused at build time.

The rules are one function each in `slagen.spec.names`: `check_variant_name`, `check_package_name` and
`check_generated_names` (the names a package defines per variant must not collide; both sides are named).
"""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from slagen import api
from slagen.cli import main
from slagen.spec import BUILTIN_SPECS, SpecError
from slagen.spec.names import check_generated_names, check_package_name, check_variant_name, generated_names

BASE = BUILTIN_SPECS["linear"]


@pytest.mark.parametrize("name", ["foo\n", "foo\r", " foo", "import", "class", "match", "torch",
                                  "triton", "slagen", "layers", "kernels", "tables", "os", "sys", "print",
                                  "type", "Foo", "1foo", "foo-bar", "", "a" * 64, "fóo"])
def test_bad_variant_names_are_refused(name):
    with pytest.raises(SpecError, match="^name: "):
        dataclasses.replace(BASE, name=name)


@pytest.mark.parametrize("name", ["None", "import", "torch", "layers", "os", "my-pkg", "pkg\n", ""])
def test_bad_package_names_are_refused(tmp_path, name):
    result = CliRunner().invoke(main, ["build", "linear", "--no-tune", "--out", str(tmp_path), "--name", name])
    assert result.exit_code == 2 and result.output.startswith("slagen: error: --name: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("a, b, clash", [
    ("foo", "foo_recurrent", "'foo_recurrent'"),
    ("a_1", "a1", "'A1Layer'"),
    ("x_y", "x__y", "'XYLayer'"),
])
def test_colliding_variants_are_refused_naming_both(tmp_path, a, b, clash):
    specs = [dataclasses.replace(BASE, name=a), dataclasses.replace(BASE, name=b)]
    with pytest.raises(SpecError) as info:
        api.build(specs, out_dir=str(tmp_path), name="pkg")
    message = str(info.value)
    assert clash in message and f"variant {a!r}" in message and f"variant {b!r}" in message
    assert list(tmp_path.iterdir()) == []


def test_a_variant_named_like_the_package_is_refused(tmp_path):
    with pytest.raises(SpecError, match="the package name 'mine'"):
        api.build([dataclasses.replace(BASE, name="mine")], out_dir=str(tmp_path), name="mine")


NAMES = st.from_regex(r"[a-c][a-c_1]{0,4}(_recurrent)?", fullmatch=True)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(names=st.lists(NAMES, min_size=2, max_size=4, unique=True))
def test_accepted_name_sets_define_distinct_names(names):
    """Property: whenever a set of variant names is accepted, every name the package defines is distinct
    (and when two would collide, the set is refused)."""
    try:
        for name in names:
            check_variant_name(name)
        check_generated_names(names, package="pkg")
    except SpecError:
        defined = [n for v in names for n in generated_names(v).values()] + ["pkg"]
        bad_name = any(not _ok(v) for v in names)
        assert bad_name or len(set(defined)) < len(defined)
        return
    defined = [n for v in names for n in generated_names(v).values()] + ["pkg"]
    assert len(set(defined)) == len(defined)


def _ok(name: str) -> bool:
    try:
        check_variant_name(name)
        return True
    except SpecError:
        return False


def test_package_name_rule_accepts_plain_identifiers():
    assert check_package_name("slagen_kernels") == "slagen_kernels"
    assert check_package_name("MyKernels2") == "MyKernels2"
