"""A generated package is standalone: `pip install` it beside torch and triton alone, import it, run it.

The fresh environment is a `venv --without-pip` whose site folder sees, through a .pth file, only torch,
triton and what they import (links into this interpreter's site-packages: no download) and the folder pip
installed the package into; slagen, jinja2, sqlalchemy, optuna, click and rich are not reachable from it.
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
import torch

from slagen.codegen.package import VariantBuild, build_package
from slagen.codegen.standalone import PACKAGE_KERNEL_IMPORT, SLAGEN_ROOT, runtime_files
from slagen.reference import attention, make_inputs
from slagen.spec import BUILTIN_SPECS

SMALL = dict(head_dim_k=32, head_dim_v=16)
RETNET = dataclasses.replace(BUILTIN_SPECS["retnet"], **SMALL)
SLA_GLA = dataclasses.replace(BUILTIN_SPECS["sla_gla"], **SMALL)
# torch's and triton's imports (numpy: the interpreter's); jinja2, a declared torch dependency, stays out
TORCH_ONLY = ("torch", "torchgen", "functorch", "triton", "filelock", "typing_extensions", "sympy", "mpmath",
              "networkx", "fsspec", "numpy")
BANNED = ("slagen", "jinja2", "sqlalchemy", "optuna", "click", "rich", "alembic")


def _torch_only_site(folder: Path) -> Path:
    site = Path(torch.__file__).resolve().parents[1]
    folder.mkdir()
    for entry in site.iterdir():
        if entry.name.split("-")[0].split(".")[0].lower() in TORCH_ONLY:
            (folder / entry.name).symlink_to(entry)
    return folder


def _fresh_python(tmp: Path, paths: list[Path]) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True)
    python = tmp / "venv" / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text("".join(f"{p}\n" for p in paths))
    return python


def _pip_install(package: Path, target: Path) -> None:
    source = target.parent / "src" / package.name  # pip builds in the source tree: build from a copy
    shutil.copytree(package, source)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "--target", str(target), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_runtime_copy_is_slagens_runtime_byte_for_byte():
    files = runtime_files()
    for relative, text in files.items():
        if relative != "__init__.py":
            assert (SLAGEN_ROOT / relative).read_text() == text, relative
    assert {"runtime/package.py", "runtime/layers/base.py", "runtime/cp_run.py", "spec/variant.py", "env.py",
            "identity.py", "reference/attention.py"} <= set(files)


def test_package_declares_slagens_own_torch_triton_and_python_ranges(tmp_path):
    import tomllib

    from slagen.codegen.standalone import DEPENDENCIES, REQUIRES_PYTHON

    ours = tomllib.loads((SLAGEN_ROOT.parent / "pyproject.toml").read_text())["project"]
    root = build_package([VariantBuild(RETNET)], tmp_path, "ranges_pkg")
    theirs = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = [d for d in ours["dependencies"] if d.split(">")[0].split("=")[0] in ("torch", "triton")]
    assert theirs["dependencies"] == wanted == list(DEPENDENCIES)
    assert theirs["requires-python"] == ours["requires-python"] == REQUIRES_PYTHON
    assert theirs["name"] == "ranges_pkg" and theirs["version"].startswith(ours["version"] + "+")


@pytest.mark.interpreter
def test_pip_installed_package_runs_with_torch_and_triton_only(tmp_path):
    out = tmp_path / "out"
    pkg_a = build_package([VariantBuild(RETNET)], out, "standalone_a")
    pkg_b = build_package([VariantBuild(SLA_GLA)], out, "standalone_b")
    assert PACKAGE_KERNEL_IMPORT in next((pkg_a / "kernels").glob("retnet_forward_*.py")).read_text()
    installed = tmp_path / "installed"
    for package in (pkg_a, pkg_b):
        _pip_install(package, installed)
    python = _fresh_python(tmp_path, [_torch_only_site(tmp_path / "torch_only"), installed])

    inputs = {"retnet": make_inputs(RETNET, 2, 37, 3, dtype=torch.float32, seed=3, with_initial_state=True),
              "sla_gla": make_inputs(SLA_GLA, 1, None, 2, dtype=torch.float32, seed=4, seqlens=[20, 17])}
    torch.save(inputs, tmp_path / "inputs.pt")
    code = textwrap.dedent(f"""
        import importlib.util, json, os, sys
        import torch
        import standalone_a, standalone_b
        inputs = torch.load("inputs.pt")
        out = {{
            "retnet": standalone_a.retnet(**inputs["retnet"], output_final_state=True),
            "sla_gla": standalone_b.sla_gla(**inputs["sla_gla"], output_final_state=True),
        }}
        os.environ["TRITON_INTERPRET"] = "0"  # CPU tensors without the interpreter: the package's reference copy
        out["retnet_cpu_path"] = standalone_a.retnet_recurrent(**inputs["retnet"], output_final_state=True)
        torch.save(out, "outputs.pt")
        loaded = [m for m in {BANNED!r} if m in sys.modules or any(k.startswith(m + ".") for k in sys.modules)]
        print(json.dumps({{"loaded": loaded, "slagen_reachable": importlib.util.find_spec("slagen") is not None,
                          "files": [standalone_a.__file__, standalone_b.__file__]}}))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["TRITON_INTERPRET"] = "1"
    done = subprocess.run([python, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [] and not report["slagen_reachable"], report
    assert all(f.startswith(str(installed)) for f in report["files"]), report["files"]

    outputs = torch.load(tmp_path / "outputs.pt")
    for key, spec in (("retnet", RETNET), ("sla_gla", SLA_GLA), ("retnet_cpu_path", RETNET)):
        x = {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v
             for k, v in inputs[key.removesuffix("_cpu_path")].items()}
        want = attention(spec, **x, output_final_state=True)
        for got, expected in zip(outputs[key], want):
            err = (got.double() - expected).norm() / expected.norm()
            assert err < 1e-4, f"{key}: relative error {err:.2e}"


def test_a_package_pip_installed_from_its_folder_can_be_rebuilt_but_not_once_a_user_touched_it(tmp_path):
    """pip builds in the folder it installs from (setuptools' `build/` and `<name>.egg-info/`): a rebuild takes
    them along with the package, unless they hold anything setuptools did not write from the package's files."""
    from slagen.codegen.package_files import check_replaceable
    from slagen.spec import SpecError

    root = build_package([VariantBuild(RETNET)], tmp_path, "pip_pkg")
    fresh = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "--target", str(tmp_path / "site"), str(root)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (root / "build/lib/pip_pkg/tables.json").is_file() and (root / "pip_pkg.egg-info/PKG-INFO").is_file()
    touches = {"build/lib/pip_pkg/notes.md": None, "build/notes.md": None, "build/lib/pip_pkg/tables.json": "edit",
               "pip_pkg.egg-info/mine.txt": None, "pip_pkg.egg-info/PKG-INFO": "edit"}
    for rel, how in touches.items():
        path = root / rel
        before = path.read_bytes() if how else None
        path.write_bytes((before or b"") + b"\nmine\n")
        with pytest.raises(SpecError, match=f"{rel}' was not written by slagen"):
            check_replaceable(root)
        path.write_bytes(before) if how else path.unlink()
    again = build_package([VariantBuild(RETNET)], tmp_path, "pip_pkg")
    assert {p.relative_to(again): p.read_bytes() for p in again.rglob("*") if p.is_file()} == fresh
