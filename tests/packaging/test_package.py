"""`slagen build`: the emitted package, its dispatch table, the fallback chain and its import footprint."""

import dataclasses
import json
import logging
import subprocess
import sys
import textwrap

import pytest
import torch

from slagen import api
from slagen.codegen import lower
from slagen.codegen.package import TunedChoice, VariantBuild, build_package
from slagen.reference import attention, make_inputs
from slagen.identity import DeviceFingerprint, TuningKey
from slagen.runtime import dispatch
from slagen.runtime.dispatch import DispatchTable, PackageError
from slagen.runtime.package import KernelPackage
from slagen.spec import BUILTIN_SPECS

SMALL = dict(head_dim_k=32, head_dim_v=16)
LINEAR = dataclasses.replace(BUILTIN_SPECS["linear"], **SMALL)
SLA_RETNET = dataclasses.replace(BUILTIN_SPECS["sla_retnet"], **SMALL)
H100 = DeviceFingerprint("NVIDIA H100 80GB HBM3", "9.0", 132, 0, "", "", "", "")  # what a package detects
H200 = DeviceFingerprint("NVIDIA H200", "9.0", 132, 0, "", "", "", "")
A100 = DeviceFingerprint("NVIDIA A100-SXM4-80GB", "8.0", 108, 0, "", "", "", "")
KEY = TuningKey(LINEAR.spec_hash, "linear.forward", "t" * 16, dataclasses.replace(H100, driver_version="570.1"),
                "float32", "bh4_t64")


def _config(spec, op, **over):
    plan = lower(spec)[op]
    return plan.validate_config(over, partial=True).as_dict()


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pkg")
    choices = {"forward": [
        TunedChoice(H100.name, "sm90", "float32/bh4_t64", _config(LINEAR, "forward", chunk_size=16), "uid-a",
                    KEY.stable_hash()),
        TunedChoice(H100.name, "sm90", "float32/bh64_t4096", _config(LINEAR, "forward", chunk_size=32), "uid-b"),
    ]}
    builds = [VariantBuild(LINEAR, choices), VariantBuild(SLA_RETNET)]
    return build_package(builds, out, "pkg_under_test")


def _config_of(table, variant, config_id):
    return table.config_entry(variant, config_id)["config"]


def test_dispatch_exact_bucketed_family_and_unknown(package_dir, caplog):
    table = DispatchTable.load(package_dir / "tables.json")
    default = lower(LINEAR)["forward"].default_config().as_dict()
    pick = lambda gpu, bh, t, dtype="float32": _config_of(table, "linear", table.choose("linear", "forward", gpu, dtype, bh, t))
    assert pick(H100, 4, 64)["chunk_size"] == 16  # exact bucket
    assert pick(H100, 64, 4000)["chunk_size"] == 32  # T=4000 falls in the t4096 bucket
    assert pick(H100, 64, 8192)["chunk_size"] == 32  # nearest bucket
    with caplog.at_level(logging.WARNING, logger="slagen.runtime"):
        assert pick(H200, 4, 64)["chunk_size"] == 16  # same architecture family
        assert pick(A100, 4, 64) == default  # unknown GPU: heuristic default
        pick(A100, 4, 64)
    assert pick(None, 4, 64) == default  # no GPU
    messages = [r.getMessage() for r in caplog.records]
    assert sum("same architecture" in m for m in messages) == 1
    assert sum("heuristic default" in m for m in messages) == 1  # logged once, not per call


def test_package_imports_only_torch_and_triton(package_dir):
    code = textwrap.dedent(f"""
        import sys, importlib.util
        spec = importlib.util.spec_from_file_location("pkg_under_test", r"{package_dir}/__init__.py",
                                                      submodule_search_locations=[r"{package_dir}"])
        mod = importlib.util.module_from_spec(spec); sys.modules["pkg_under_test"] = mod
        spec.loader.exec_module(mod)
        assert callable(mod.linear) and callable(mod.sla_retnet_recurrent) and mod.SlaRetnetLayer
        banned = [m for m in ("jinja2", "sqlalchemy", "optuna", "click", "rich", "alembic", "slagen.codegen",
                              "slagen.reference") if m in sys.modules]
        print(",".join(banned))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"importing a generated package loaded {proc.stdout.strip()}"


@pytest.mark.interpreter
@pytest.mark.parametrize("op", ["forward", "recurrent"])
def test_package_functions_match_reference(package_dir, op):
    package = KernelPackage(package_dir)
    for spec in (LINEAR, SLA_RETNET):
        inputs = make_inputs(spec, 2, 37, 3, dtype=torch.float64, seed=7, with_initial_state=True)
        expected = attention(spec, **inputs, output_final_state=True)
        cast = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in inputs.items()}
        o, state = package.call(spec.name, op, cast.pop("q"), cast.pop("k"), cast.pop("v"), **cast,
                                output_final_state=True)
        for got, want in ((o, expected[0]), (state, expected[1])):
            err = (got.double() - want).norm() / want.norm()
            assert err < 1e-4, f"{spec.name}.{op}: relative error {err:.2e}"


def test_build_is_reproducible(tmp_path):
    builds = [VariantBuild(LINEAR), VariantBuild(SLA_RETNET)]
    first = build_package(builds, tmp_path / "a", "pkg")
    second = build_package(builds, tmp_path / "b", "pkg")
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


def test_tuned_config_from_db_is_validated(tmp_path):
    bad = TunedChoice(H100.name, "sm90", "float32/bh4_t64", {**_config(LINEAR, "forward"), "chunk_size": "64); import os"})
    with pytest.raises(ValueError, match="config.chunk_size"):
        build_package([VariantBuild(LINEAR, {"forward": [bad]})], tmp_path, "pkg")
    assert not (tmp_path / "pkg").exists()  # nothing half-written


def _copy(package_dir, tmp_path):
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(package_dir, target)
    return target


def test_truncated_table_refused(package_dir, tmp_path):
    copy = _copy(package_dir, tmp_path)
    text = (copy / "tables.json").read_text()
    (copy / "tables.json").write_text(text[: len(text) // 2])
    with pytest.raises(PackageError, match="not valid JSON .*rebuild"):
        KernelPackage(copy)


def test_tampered_table_refused(package_dir, tmp_path):
    copy = _copy(package_dir, tmp_path)
    data = json.loads((copy / "tables.json").read_text())
    config = next(iter(data["variants"]["linear"]["configs"].values()))
    config["config"]["chunk_size"] = 128
    (copy / "tables.json").write_text(json.dumps(data))
    with pytest.raises(PackageError, match="checksum"):
        KernelPackage(copy)


def test_the_table_records_each_tuned_entrys_key(package_dir, tmp_path):
    devices = DispatchTable.load(package_dir / "tables.json").data["variants"]["linear"]["ops"]["forward"]["devices"]
    assert devices[H100.name]["keys"] == {"float32/bh4_t64": KEY.stable_hash()}  # the entry tuned under a key
    copy = _copy(package_dir, tmp_path)
    data = json.loads((copy / "tables.json").read_text())
    data["variants"]["linear"]["ops"]["forward"]["devices"][H100.name]["keys"]["float32/bh4_t64"] = "not-a-hash"
    body = {k: v for k, v in data.items() if k != "checksum"}
    (copy / "tables.json").write_text(json.dumps({**body, "checksum": dispatch.table_checksum(body)}))
    with pytest.raises(PackageError, match="expected a tuning key's hash"):
        KernelPackage(copy)


def test_tampered_kernel_refused(package_dir, tmp_path):
    copy = _copy(package_dir, tmp_path)
    kernel = next((copy / "kernels").glob("linear_forward_*.py"))
    kernel.write_text(kernel.read_text() + "\nimport os\n")
    with pytest.raises(PackageError, match="does not match its recorded sha256"):
        KernelPackage(copy)


def test_api_build_without_db(tmp_path):
    report = api.build([LINEAR], out_dir=str(tmp_path), name="plain")
    assert report.variants == ["linear"] and report.tuned_entries == 0 and report.gpus == []
    assert (tmp_path / "plain" / "tables.json").is_file()


def test_description_cannot_inject_code(tmp_path):
    import ast

    evil = dataclasses.replace(LINEAR, name="evil", description='x"""\nimport os; os.system("echo pwned")\n"""\\')
    root = build_package([VariantBuild(evil)], tmp_path, "pkg")
    for name in ("__init__.py", "layers.py"):
        tree = ast.parse((root / name).read_text())
        assert not any(isinstance(node, (ast.Import, ast.ImportFrom)) and any(a.name == "os" for a in node.names)
                       for node in ast.walk(tree))


def test_cpu_tensors_without_the_interpreter_take_the_callers_cpu_path(package_dir, monkeypatch):
    """The runtime never imports the reference: the CPU path is the caller's (a generated package hands
    in slagen.reference.attention); without one the call is refused in one line."""
    from slagen import env

    monkeypatch.setattr(env, "interpreter_mode", lambda: False)
    inputs = make_inputs(LINEAR, 1, 9, 2, dtype=torch.float32, seed=3)
    q, k, v = inputs.pop("q"), inputs.pop("k"), inputs.pop("v")
    seen = []

    def cpu_path(spec, *args, method, **kwargs):
        seen.append((spec.name, method))
        return attention(spec, *args, method=method, **kwargs)

    o, _ = KernelPackage(package_dir, cpu_path=cpu_path).call("linear", "recurrent", q, k, v, **inputs)
    assert seen == [("linear", "recurrent")]
    torch.testing.assert_close(o, attention(LINEAR, q, k, v, **inputs)[0])
    with pytest.raises(RuntimeError, match="no CPU path"):
        KernelPackage(package_dir).call("linear", "forward", q, k, v, **inputs)


@pytest.mark.interpreter
def test_grouped_value_heads_choose_the_bucket_by_value_heads(package_dir, monkeypatch):
    """Programs run per value head: a call with HV = 2·H value heads is bucketed by B·HV, and the cached
    launcher of an HV = H call with the same q is not reused for it."""
    package = KernelPackage(package_dir)
    asked = []
    original = package.table.choose
    monkeypatch.setattr(package.table, "choose", lambda *a: asked.append(a[4]) or original(*a))
    for value_heads in (2, 4, 2):
        inputs = make_inputs(LINEAR, 3, 16, 2, dtype=torch.float32, seed=5, value_heads=value_heads)
        expected = attention(LINEAR, **inputs)[0]
        o, _ = package.call("linear", "forward", inputs.pop("q"), inputs.pop("k"), inputs.pop("v"), **inputs)
        torch.testing.assert_close(o, expected.float(), rtol=1e-4, atol=1e-4)
    assert asked == [3 * 2, 3 * 4]  # the third call (HV = 2 again) reuses the first's launcher
