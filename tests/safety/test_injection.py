"""Class 1 of issue 12: no string from a tuning record, a spec or the command line becomes code.

Property-based: hypothesis fills one string field of a JSONL tuning record (or of a spec) with payloads
(newlines, \\r, \\x0b, \\x0c, \\u2028, NUL, quotes, backslashes, Jinja syntax, Python statements). Each
example is either refused where it enters (import / spec validation, one error naming the field), or built
into a package that is then imported under an audit hook refusing os.system, subprocess, exec, spawn and
open-for-write, and whose files parse to the same AST shape as a clean build: no statement the templates
did not produce. No kernel runs here: build and import only.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import sys
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slagen import api
from slagen.codegen import escape, lower
from slagen.codegen.package import TunedChoice, VariantBuild, build_package
from slagen.codegen.render import template_hash
from slagen.db import DeviceFingerprint, KernelRef, TrialRecord
from slagen.db.errors import TuningDBError
from slagen.spec import BUILTIN_SPECS, SpecError

BASE = BUILTIN_SPECS["linear"]
PAYLOADS = [
    "\nimport os; os.system('touch /tmp/slagen-pwned')\n", "x\rimport os", "x\x0bimport os", "x\x0cimport os",
    "x\u2028import os", "x\u2029y", "x\x85y", "x\x00y", "\"", "'", "\"\"\"", "'''", "\\", "\\n", "{{ 7 * 7 }}",
    "{% raw %}", "{# c #}", "#", "a\tb", "\x1b[31m", "é", "NVIDIA H100\nos.system('id')", "-inf", "",
    "bh1_t64\n", "float32 ", "linear.forward\n", " ", "$(id)", "`id`", "__import__('os').system('id')",
]
ALPHABET = list("aZ09 ._-:/()+,'\"\\#{}%\n\r\x0b\x0c\x00\u2028\x85")
PAYLOAD = st.one_of(
    st.sampled_from(PAYLOADS),
    st.tuples(st.sampled_from(["", "NVIDIA H100 ", "9.0", "bh1_t64", "3.2.0", "tpe", "host-a"]),
              st.text(st.sampled_from(ALPHABET), min_size=1, max_size=12)).map("".join),
)
# Every string field of a trial line, and the spec strings of its variant line.
FIELDS = [("device", "name"), ("device", "compute_capability"), ("device", "driver_version"),
          ("device", "cuda_version"), ("device", "triton_version"), ("device", "torch_version"),
          ("shape_bucket",), ("dtype",), ("plan_name",), ("spec_hash",), ("template_hash",), ("sampler",),
          ("host",), ("slagen_version",), ("config", "<key>"), ("config", "<value>"),
          ("spec", "name"), ("spec", "description")]
REFUSED_EVENTS = ("os.system", "subprocess.Popen", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
                  "socket.connect", "shutil.rmtree", "os.remove", "os.rename")
_GUARD: dict = {"on": False, "violations": []}


def _audit(event: str, args: tuple) -> None:
    if not _GUARD["on"]:
        return
    bad = event.startswith(REFUSED_EVENTS)
    if event == "open" and len(args) >= 3:
        mode, flags = args[1], args[2]
        bad = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
            (isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND))
    if bad:
        _GUARD["violations"].append((event, repr(args)[:200]))
        raise RuntimeError(f"refused by the test's audit hook: {event}")


sys.addaudithook(_audit)  # hooks cannot be removed; this one acts only while _GUARD["on"]


def _import_guarded(package_dir: Path) -> None:
    """Import a built package and every kernel module it ships, with writes and processes refused."""
    from slagen.runtime.loader import import_file

    def forget() -> None:  # a stale `pkg.layers` from an earlier example must not stand in for this one's
        for name in [m for m in sys.modules if m == package_dir.name or m.startswith(package_dir.name + ".")]:
            del sys.modules[name]

    forget()
    old_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    _GUARD.update(on=True, violations=[])
    try:
        module = api.import_package(str(package_dir))
        for path in sorted((package_dir / "kernels").glob("*.py")):
            # as the runtime imports them: submodules of the package's own runtime copy (`from . import launch`)
            import_file(path, f"{module.__name__}._runtime.runtime._inj_{path.stem}")
        assert Path(module.layers.__file__).parent == package_dir.resolve()  # its own layers.py ran
    finally:
        _GUARD["on"] = False
        sys.dont_write_bytecode = old_bytecode
        forget()
    assert _GUARD["violations"] == [], _GUARD["violations"]


def _shape(package_dir: Path) -> dict[str, list[str]]:
    """Per file (kernel files by position), the AST node types in walk order: literals and names may differ
    between builds, statements may not."""
    out = {}
    files = sorted(package_dir.rglob("*.py"))
    for i, path in enumerate(files):
        key = f"kernel{i}" if path.parent.name == "kernels" and path.name != "__init__.py" else path.name
        out[key] = [type(node).__name__ for node in ast.walk(ast.parse(path.read_text()))]
    return out


def _trial_line() -> tuple[dict, dict]:
    """A valid variant line and trial line for BASE's forward kernel (the build ships its config)."""
    plan = lower(BASE)["forward"]
    record = TrialRecord(
        kernel=KernelRef(BASE.spec_hash, f"{BASE.name}.forward", template_hash(plan.template)),
        device=DeviceFingerprint("NVIDIA H100 80GB HBM3", "9.0", 132, 85_899_345_920, "550.54.15", "12.4", "3.2.0",
                                 "2.5.1"),
        shape_bucket="bh32_t4096", dtype="bfloat16", config=plan.default_config().as_dict(), status="ok",
        median_ms=1.0, p20_ms=None, p80_ms=None, n_repeats=3, max_error=0.0, sampler="tpe", seed=0, host="host-a",
        slagen_version="0.1.0", created_at=datetime(2026, 1, 2, 3, 4, 5))
    trial = {"type": "trial", **record.to_json_dict()}
    trial.pop("trial_uid")
    variant = {"type": "variant", "spec_hash": BASE.spec_hash, "spec": json.loads(BASE.canonical_json())}
    return variant, trial


def _write_export(folder: Path, variant: dict, trial: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    header = {"format": "slagen-tuning-jsonl", "format_version": 1, "schema_version": 2}
    (folder / "t.jsonl").write_text("\n".join(json.dumps(x) for x in (header, variant, trial)) + "\n")


def _build(tmp: Path, tag: str, spec=BASE, variant=None, trial=None) -> Path:
    exports = tmp / f"exports_{tag}"
    _write_export(exports, *(variant, trial) if variant is not None else _trial_line())
    report = api.build([spec], tuning_dir=str(exports), out_dir=str(tmp / f"out_{tag}"), name="pkg")
    return Path(report.package_dir)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("clean")
    package = _build(root, "clean")
    _import_guarded(package)
    return root, _shape(package)


def _put(variant: dict, trial: dict, field: tuple, payload: str) -> None:
    if field[0] == "spec":
        variant["spec"][field[1]] = payload
    elif field == ("config", "<key>"):
        trial["config"][payload] = 1
    elif field == ("config", "<value>"):
        trial["config"][sorted(trial["config"])[0]] = payload
    elif len(field) == 2:
        trial[field[0]][field[1]] = payload
    else:
        trial[field[0]] = payload


SETTINGS = settings(max_examples=15, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SETTINGS
@given(field=st.sampled_from(FIELDS), payload=PAYLOAD)
def test_record_strings_are_refused_or_inert(clean, tmp_path_factory, field, payload):
    _, clean_shape = clean
    variant, trial = _trial_line()
    _put(variant, trial, field, payload)
    tmp = tmp_path_factory.mktemp("rec")
    try:
        package = _build(tmp, "x", variant=variant, trial=trial)
    except (TuningDBError, SpecError, ValueError) as err:
        assert "\n" not in str(err).strip() or "\n" in payload  # one line, unless it quotes the payload's repr
        return
    _import_guarded(package)
    assert _shape(package) == clean_shape


@SETTINGS
@given(field=st.sampled_from(["name", "description", "decay", "head_gate", "gate_scale", "zero_sum_decay",
                               "output_norm", "chunk_size", "dtypes"]), payload=PAYLOAD)
def test_spec_strings_are_refused_or_inert(tmp_path_factory, field, payload):
    try:
        spec = dataclasses.replace(BASE, **{field: [payload] if field == "dtypes" else payload})
    except SpecError:
        assert field in ("name", "decay", "head_gate", "gate_scale", "zero_sum_decay", "output_norm",
                         "chunk_size", "dtypes")  # free text (description) is never refused
        return
    tmp = tmp_path_factory.mktemp("spec")
    clean = _shape(build_package([VariantBuild(dataclasses.replace(BASE, name="clean_base"))], tmp / "c", "pkg"))
    try:
        package = build_package([VariantBuild(spec)], tmp / "x", "pkg")
    except SpecError:  # a name that collides or shadows
        return
    _import_guarded(package)
    assert _shape(package) == clean


@SETTINGS
@given(payload=PAYLOAD, what=st.sampled_from(["gpu", "trial_uid"]))
def test_the_escape_layer_holds_even_without_the_grammar(tmp_path_factory, payload, what):
    """Defence in depth: a device name or trial uid that skipped the record grammar still reaches the
    kernel files only through `escape.comment`, which refuses control characters."""
    plan = lower(BASE)["forward"]
    choice = dict(gpu="NVIDIA H100", family="sm90", bucket="bfloat16/bh32_t4096",
                  config=plan.default_config().as_dict(), trial_uid="abc")
    choice[what] = payload
    build = VariantBuild(BASE, {"forward": [TunedChoice(**choice)]})
    tmp = tmp_path_factory.mktemp("esc")
    try:
        package = build_package([build], tmp, "pkg")
    except escape.UnsafeTextError:
        assert any(not c.isprintable() for c in payload)
        return
    clean = VariantBuild(BASE, {"forward": [TunedChoice(**dict(choice, **{what: "x"}))]})
    _import_guarded(package)
    assert _shape(package) == _shape(build_package([clean], tmp / "c", "pkg"))


@pytest.mark.parametrize("text", ["a\nb", "a\rb", "a\x0bb", "a\x0cb", "a\u2028b", "a\x00b", "a\x85b"])
def test_comment_writer_refuses_line_breaks_and_control_characters(text):
    with pytest.raises(escape.UnsafeTextError):
        escape.comment(text)


@pytest.mark.parametrize("value", ["a\nb'\"\\", "{{ x }}", "\u2028", 3, None, True, 1.5])
def test_literals_round_trip(value):
    assert ast.literal_eval(escape.py_literal(value)) == value


def test_non_finite_and_other_objects_are_not_literals():
    for value in (float("inf"), float("nan"), object(), b"x"):
        with pytest.raises(escape.UnsafeTextError):
            escape.py_literal(value)


def test_templates_send_data_through_the_escape_filters():
    """The package templates: every `{{ }}` that holds data goes through `pyrepr` or `comment_text`; the
    rest are identifiers checked by slagen.spec.names (variant names, layer classes, argument names)."""
    import re

    from slagen.codegen.render import templates_dir

    allowed_raw = {"s.name", "suffix", "a", "layer_classes[s.name]", "l.cls"}  # l.cls: codegen.layer_names
    for name in ("package_init.py.jinja", "package_layers.py.jinja", "package_provenance.jinja"):
        for expr in re.findall(r"{{(.*?)}}", (templates_dir() / name).read_text(), flags=re.S):
            expr = expr.strip("- \n")
            if expr.startswith("entry("):  # the macro call; its body is checked as part of the file
                continue
            assert expr in allowed_raw or expr.endswith(("| pyrepr", "| comment_text")), (name, expr)
