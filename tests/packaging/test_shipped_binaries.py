"""Kernels shipped compiled (`slagen build --compile-for`): on a matching target, the runtime's first call finds
them in Triton's cache and compiles nothing; on another target or triton it compiles as usual.

No GPU is needed: Triton's active driver is a stand-in reporting the target (slagen.tuning.target_driver), so
the JIT's own specialisation, cache key and cache lookup run here; the compiler is made to fail (a compile
attempt raises), and loading and launching a binary are the stand-in's no-ops. Each check runs in a fresh
process without TRITON_INTERPRET, with an empty Triton cache.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from slagen.codegen.package import VariantBuild, build_package
from slagen.spec import BUILTIN_SPECS
from slagen.tuning.ship import parse_targets, ship_binaries, ShipError

ROOT = Path(__file__).resolve().parents[2]
RETNET = dataclasses.replace(BUILTIN_SPECS["retnet"], head_dim_k=32, head_dim_v=16)  # varlen: fixed and varlen calls

CHECK = textwrap.dedent("""
    import importlib, json, sys
    from pathlib import Path
    import torch, triton
    from triton.compiler import compiler

    def refuse(*args, **kwargs):
        raise RuntimeError("compile attempted")

    compiler.ASTSource.make_ir = refuse  # a cache hit never gets here
    root, arch, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    asked, skipping = [], [mode != "refuse"]
    if mode != "refuse":  # a hook before the runtime's that skips compiles (while skipping): calls reach every kernel
        triton.knobs.runtime.jit_cache_hook = lambda **kwargs: asked.append(kwargs["fn"].name) or skipping[0]
    from slagen.reference.inputs import make_inputs
    from slagen.runtime.loader import import_file
    from slagen.tuning.ship import exercise, selections
    from slagen.tuning.target_driver import active_target

    package = import_file(root / "__init__.py", root.name, package=True)  # its own runtime copy
    importlib.import_module(root.name + "._runtime.env").interpreter_mode = lambda: True  # CPU tensors: kernel path
    tables = json.loads((root / "tables.json").read_text())
    report = {"error": None}

    def calls():
        for variant, pick in selections(tables, 90):
            exercise(package._PACKAGE, variant, pick)
        if mode == "float16":  # a specialisation not shipped (bf16 only)
            inputs = make_inputs(package._PACKAGE.specs[variant], heads=16, dtype=torch.float16, seed=0,
                                 batch=2, seqlen=100, with_initial_state=False)
            package._PACKAGE.call(variant, "forward", *(inputs.pop(n) for n in "qkv"), **inputs)

    with active_target(arch) as driver:
        try:
            calls()
            calls()  # a second call logs nothing new
            skipping[0] = False
            calls()  # shipped kernels load; the first other one is compiled (refused)
        except RuntimeError as err:
            report["error"] = str(err)
    report.update(loaded=sorted(set(driver.utils.loaded)), launches=driver.launches, asked=sorted(set(asked)))
    print(json.dumps(report))
""")


def _build(out: Path) -> tuple[Path, dict]:
    report = {}
    root = build_package([VariantBuild(RETNET)], out, "shipped_pkg",
                         lambda folder: report.update(ship_binaries(folder, "shipped_pkg", "h100,h200")))
    return root, report


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("shipped"))


def _check(root: Path, arch: int, tmp: Path, mode: str = "refuse") -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp / "triton_cache"), PYTHONPATH=str(ROOT), TRITON_DEFAULT_FP_FUSION="1",
               SLAGEN_CACHE_DIR=str(tmp / "slagen_cache"))
    done = subprocess.run([sys.executable, "-c", CHECK, str(root), str(arch), mode], capture_output=True, text=True,
                          env=env, cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "log": done.stderr}


def _compiled_lines(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if line.startswith("shipped_pkg: retnet ") and line.endswith("; compiling")]


def test_shipped_kernels_load_without_compiling(built, tmp_path):
    root, report = built
    manifest = json.loads((root / "binaries" / "sm90.json").read_text())
    assert report["sm90"]["gpus"] == ["h100", "h200"] and report["sm90"]["kernels"] == len(manifest["kernels"]) > 0
    assert {k["config"] for k in manifest["kernels"]} == set(json.loads((root / "tables.json").read_text())
                                                           ["variants"]["retnet"]["configs"])
    result = _check(root, 90, tmp_path)
    assert result["error"] is None, result
    assert "shipped" not in result["log"] and "compiling" not in result["log"], result["log"][-2000:]
    assert result["loaded"] == sorted({k["kernel"] for k in manifest["kernels"]}) and result["launches"] > 0


@pytest.mark.parametrize("arch, edit, why", [
    (80, False, "no kernels are shipped compiled for cuda sm_80 (sm_80, triton "),
    (90, True, "the shipped kernels were compiled with triton 0.0.0-other"),
])
def test_each_kernel_compiled_instead_of_shipped_is_logged_once(built, tmp_path, arch, edit, why):
    """Every kernel the calls reach (twice over) is named once, with the reason, just before it would compile."""
    root, _ = built
    kernels = sorted({k["kernel"] for k in json.loads((root / "binaries" / "sm90.json").read_text())["kernels"]})
    if edit:
        root = shutil.copytree(root, tmp_path / "other" / root.name)
        path = root / "binaries" / "sm90.json"
        path.write_text(path.read_text().replace(json.loads(path.read_text())["triton_version"], "0.0.0-other"))
    result = _check(root, arch, tmp_path, mode="skip")
    assert result["error"] == "compile attempted" and result["asked"] == kernels, result
    lines = _compiled_lines(result["log"])
    assert sorted(line.split()[2].rstrip(":") for line in lines) == kernels, result["log"][-3000:]
    assert all(why in line for line in lines), lines
    summary = [line for line in result["log"].splitlines() if line.endswith("Triton compiles each kernel at its "
                                                                             "first call.")]
    assert len(summary) == 1 and summary[0].startswith("shipped_pkg: " + why.split(" (sm_")[0]), summary


def test_a_specialisation_not_shipped_is_logged_once(built, tmp_path):
    root, _ = built
    manifest = json.loads((root / "binaries" / "sm90.json").read_text())
    result = _check(root, 90, tmp_path, mode="float16")
    assert result["error"] == "compile attempted" and result["loaded"] == sorted({k["kernel"] for k in
                                                                                  manifest["kernels"]}), result
    lines = _compiled_lines(result["log"])
    assert lines and len(lines) == len(set(lines)), result["log"][-3000:]
    assert all(": no shipped binary for this specialisation (sm_90, triton " in line for line in lines), lines
    assert {line.split()[2].rstrip(":") for line in lines} < set(result["asked"])  # bf16's, shipped, log nothing


def test_doctor_lists_the_shipped_targets(built):
    from slagen import api
    from slagen.runtime import binaries
    from slagen.tuning.target_driver import active_target

    root, report = built
    shown = api.doctor(package_dir=str(root))["package_binaries"]
    assert shown["shipped"]["sm90"]["kernels"] == report["sm90"]["kernels"]
    assert shown["shipped"]["sm90"]["gpus"] == ["h100", "h200"] and shown["shipped"]["sm90"]["variants"] == ["retnet"]
    assert shown["shipped"]["sm90"]["kernels_per_variant"] == {"retnet": report["sm90"]["kernels"]}
    assert shown["this_machine"] == "no GPU driver: the shipped kernels are not used here"
    assert shown["kernels_here"] == 0
    with active_target(90):  # an H100/H200 with this triton: served
        here = binaries.shipped_report(root)
    assert here["this_machine"] == "cuda sm_90: the shipped kernels serve this machine"
    assert here["kernels_here"] == report["sm90"]["kernels"]
    with active_target(80):  # an A100: nothing shipped for it
        here = binaries.shipped_report(root)
    assert here["this_machine"] == "no kernels are shipped compiled for cuda sm_80" and here["kernels_here"] == 0


def test_package_with_binaries_is_byte_reproducible(built, tmp_path):
    root, _ = built
    again, _ = _build(tmp_path)
    files = lambda r: sorted(str(p.relative_to(r)) for p in r.rglob("*")
                             if p.is_file() and "__pycache__" not in p.parts)
    assert files(again) == files(root)
    assert [n for n in files(root) if (root / n).read_bytes() != (again / n).read_bytes()] == []
    pyproject = (root / "pyproject.toml").read_text()
    assert '"binaries/*.json", "binaries/*/*/*"' in pyproject


def test_compile_for_names_are_checked():
    assert parse_targets("h200,h100, a100") == {80: ["a100"], 90: ["h100", "h200"]}
    with pytest.raises(ShipError, match=r"^--compile-for: expected GPU names from a100, b200, h100, h200 "
                                        r"\(comma-separated\), got 'v100'$"):
        parse_targets("h100,v100")


def test_manifest_entries_name_files_inside_the_package_only():
    from slagen.runtime.binaries import _well_formed

    good = {"hash": "a" * 64, "kernel": "chunk_output", "files": {"chunk_output.cubin": "", "chunk_output.json": ""}}
    assert _well_formed(good)
    for bad in ({"files": {"../../etc/passwd": ""}}, {"hash": "../x"}, {"kernel": "a/b"}, {"files": None},
                {"jit_keys": ["../x"]}, {"jit_keys": "a" * 64}):
        assert not _well_formed({**good, **bad}), bad


def test_only_configs_the_table_selects_on_the_target_are_compiled():
    from slagen.tuning.ship import selections

    h100 = {"family": "sm90", "buckets": {"bfloat16/bh64_t4096": "fwd_tuned"}}
    h100_bwd = {"family": "sm90", "buckets": {"bfloat16/bh64_t4096": "bwd_tuned"}}
    a100 = {"family": "sm80", "buckets": {"bfloat16/bh64_t4096": "fwd_a100"}}
    tables = {"variants": {"v": {"ops": {
        "forward": {"default": "fwd_d", "devices": {"NVIDIA H100": h100, "NVIDIA A100": a100}},
        "backward": {"default": "bwd_d", "devices": {"NVIDIA H100": h100_bwd}},
        "recurrent": {"default": "rec_d", "devices": {}}}}}}
    assert selections(tables, 90) == [
        ("v", {"backward": "bwd_d", "forward": "fwd_d", "recurrent": "rec_d"}),
        ("v", {"backward": "bwd_tuned", "forward": "fwd_tuned", "recurrent": "rec_d"})]
    assert [pick["forward"] for _, pick in selections(tables, 80)] == ["fwd_a100", "fwd_d"]


def test_another_ptxas_is_a_mismatch(built):
    from slagen.runtime import binaries
    from slagen.tuning.target_driver import active_target

    root, _ = built
    found = binaries.manifest(root, 90)
    with active_target(90):
        assert binaries.mismatch(found, "cuda", 90) == ""
        assert "another ptxas" in binaries.mismatch({**found, "backend_key": "0" * 64}, "cuda", 90)
    assert "no kernels are shipped compiled for cuda sm_80" in binaries.mismatch(None, "cuda", 80)


def test_a_manifest_without_jit_keys_names_no_specialisation(caplog):
    """Built before JIT keys were recorded: a shipped specialisation is not mistaken for an unshipped one."""
    import types

    from slagen.runtime import binaries

    fn = types.SimpleNamespace(module="k_test_manifest_keys", name="chunk_output")
    try:
        binaries._WATCHED[fn.module] = binaries._Watched("old_pkg", "retnet", "sm_90", "", None)
        binaries._log_compile(fn, "('*bf16', 'D')")
        assert caplog.records == []
        binaries._WATCHED[fn.module] = binaries._Watched("new_pkg", "retnet", "sm_90", "", {"chunk_output": set()})
        binaries._log_compile(fn, "('*bf16', 'D')")
        binaries._log_compile(fn, "('*fp16', 'D')")
        assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
            "new_pkg: retnet chunk_output: no shipped binary for this specialisation"]
    finally:
        binaries._WATCHED.pop(fn.module)
