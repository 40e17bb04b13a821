"""Compile a built package's kernels ahead of time for GPU targets and ship the binaries inside it.

Nothing here is a compiler or a loader of its own: a worker process (started without TRITON_INTERPRET) makes
Triton's active driver a stand-in for the target (`target_driver`), runs the package's own runtime
(`KernelPackage.call`, forward and backward) on small CPU inputs with each config the dispatch table can
select for that target, and Triton's JIT specialises, keys and compiles every launch exactly as on the GPU.
Its compilation listener reports each kernel; the binary and Triton's metadata (`<kernel>.cubin`,
`<kernel>.json`) are copied to `binaries/sm<arch>/<hash>/`, where `hash` is Triton's cache key for them,
and `binaries/sm<arch>.json` lists them with their target, triton version and key, options and source hash,
and the digests of the JIT's in-memory keys that asked for them (its `jit_cache_hook` sees those just before
`compile`): at run time they tell a shipped specialisation from one that compiles, before it compiles.
At run time the package's runtime puts them into Triton's cache under that key (`runtime/binaries.py`).

Kernel file names inside the binaries (line info) are `<package>/kernels/<file>.py`, not the build folder,
so the binaries are the same bytes wherever the package is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..spec import SpecError
from .aot import default_workers

# --compile-for names -> compute capability (major * 10 + minor)
TARGETS = {"a100": 80, "h100": 90, "h200": 90, "b200": 100}
HEADS = 16  # the calls compiled for: H = 16 (the JIT specialises on divisibility by 16, not on the value)
MANIFEST_FORMAT = 1


class ShipError(SpecError):
    """A bad --compile-for value, or a kernel that failed to compile for a target (one line, exit 2)."""


def parse_targets(text: str) -> dict[int, list[str]]:
    """"h100,h200" -> {90: ["h100", "h200"]}; one-line error naming the bad name and what is allowed."""
    archs: dict[int, list[str]] = {}
    for name in (n.strip().lower() for n in text.split(",")):
        if name not in TARGETS:
            raise ShipError(f"--compile-for: expected GPU names from {', '.join(sorted(TARGETS))} (comma-separated), "
                            f"got {name!r}")
        archs.setdefault(TARGETS[name], []).append(name)
    return {arch: sorted(set(names)) for arch, names in sorted(archs.items())}


def selections(tables: dict[str, Any], arch: int) -> list[tuple[str, dict[str, str]]]:
    """(variant, {op: config id}) for every combination the dispatch table selects on `sm<arch>` (per tuned
    bucket of each GPU of that family, and the defaults): the configs a package ships binaries for."""
    found: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for variant, entry in tables["variants"].items():
        ops = entry["ops"]
        defaults = {op: o["default"] for op, o in ops.items()}
        found.add((variant, tuple(sorted(defaults.items()))))
        gpus = {name: gpu["family"] for o in ops.values() for name, gpu in o["devices"].items()}
        for name in sorted(n for n, family in gpus.items() if family == f"sm{arch}"):
            tables_of = {op: o["devices"].get(name, {}).get("buckets", {}) for op, o in ops.items()}
            for bucket in sorted({b for buckets in tables_of.values() for b in buckets}):
                pick = {op: tables_of[op].get(bucket, defaults[op]) for op in ops}
                found.add((variant, tuple(sorted(pick.items()))))
    return [(variant, dict(pick)) for variant, pick in sorted(found)]


def ship_binaries(root: Path, package: str, compile_for: str, workers: int | None = None) -> dict[str, Any]:
    """Compile `root`'s kernels for the `compile_for` targets into `root/binaries/`; return sizes per target."""
    tables = json.loads((root / "tables.json").read_text())
    report: dict[str, Any] = {}
    for arch, names in parse_targets(compile_for).items():
        jobs = [{"variant": v, "pick": pick} for v, pick in selections(tables, arch)]
        count = max(1, min(workers or default_workers(), len(jobs)))
        chunks = [jobs[i::count] for i in range(count)]
        procs = [_start_worker(root, package, arch, chunk) for chunk in chunks if chunk]
        entries: list[dict[str, Any]] = []
        for proc in procs:
            out, err = proc.communicate()
            if proc.returncode != 0:
                raise ShipError(f"--compile-for: compiling for sm_{arch} failed: {err.strip().splitlines()[-1:]}")
            entries += [json.loads(line) for line in out.splitlines() if line.strip()]
        info = entries[0]["triton"] if entries else {}
        by_hash: dict[str, dict[str, Any]] = {}
        for e in entries:  # one binary; every JIT key (specialisation and options) that found it
            keys = set(by_hash.get(e["hash"], {}).get("jit_keys", [])) | set(e["jit_keys"])
            by_hash[e["hash"]] = {**{k: v for k, v in e.items() if k != "triton"}, "jit_keys": sorted(keys)}
        kernels = sorted(by_hash.values(), key=lambda e: (e["variant"], e["config"], e["kernel"], e["hash"]))
        manifest = {"format": MANIFEST_FORMAT, "target": {"backend": "cuda", "arch": arch, "warp_size": 32},
                    "gpus": names, **info, "kernels": kernels}
        (root / "binaries" / f"sm{arch}.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        size = sum(e["bytes"] for e in kernels)
        report[f"sm{arch}"] = {"gpus": names, "kernels": len(kernels), "bytes": size,
                               "bytes_per_kernel": size // max(1, len(kernels))}
    return report


def _start_worker(root: Path, package: str, arch: int, jobs: list[dict[str, Any]]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="slagen-ship-")  # every kernel compiles: the listener sees all
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton's own default, said out loud (no warning)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-m", "slagen.tuning.ship", str(root), package, str(arch)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    proc.stdin.write("".join(json.dumps(job) + "\n" for job in jobs))
    proc.stdin.close()
    proc.stdin = None  # communicate() must not flush a closed pipe
    return proc


def shipped_calls(spec: Any) -> list[tuple[str, dict[str, Any], bool, bool]]:
    """(case, inputs, differentiate, output_final_state) per call a selection is compiled with: inference with
    an initial and a final state, and training (forward + backward) without, at fixed and varlen shapes."""
    import torch

    from ..reference.inputs import make_inputs

    calls = []
    cases = [("fixed", dict(batch=2, seqlen=100))] + ([("varlen", dict(batch=1, seqlen=None, seqlens=[37, 64, 9]))]
                                                       if spec.varlen else [])
    for case, shape in cases:
        for train in (False, True):
            inputs = make_inputs(spec, heads=HEADS, dtype=torch.bfloat16, seed=0,
                                 with_initial_state=spec.initial_state and not train, **shape)
            calls.append((case, inputs, train, not train and spec.final_state))
    return calls


def exercise(package: Any, variant: str, pick: dict[str, str]) -> None:
    """Run a `KernelPackage`'s calls of `shipped_calls` with the configs `pick` (op -> config id) forced: on a
    stand-in driver this compiles (or finds) exactly the kernels the runtime launches for them."""
    package.choose = lambda variant, op, *call, **kw: pick[op]  # whatever the call (q, cu_seqlens, value heads)
    spec = package.specs[variant]
    has_backward = "backward" in package.table.data["variants"][variant]["ops"]
    for case, inputs, train, final in shipped_calls(spec):
        inputs = {k: (t.requires_grad_(train) if hasattr(t, "requires_grad_") and t.is_floating_point() else t)
                  for k, t in inputs.items()}
        q, k, v = (inputs.pop(n) for n in ("q", "k", "v"))
        for op in ["forward"] + ([] if train else ["recurrent"]):
            o, _ = package.call(variant, op, q, k, v, output_final_state=final, **inputs)
            if train and has_backward:
                o.float().sum().backward()


def _worker(root: Path, package: str, arch: int) -> None:
    """`python -m slagen.tuning.ship ROOT PACKAGE ARCH`: one JSON line per compiled kernel, for the jobs on stdin."""
    import triton
    from triton.runtime.cache import triton_key
    from triton.runtime.jit import JITFunction

    from .. import env
    from ..runtime.package import KernelPackage
    from .aot import compiler_mode
    from .target_driver import active_target

    from ..runtime.binaries import backend_key, jit_key_digest

    triton_info = {"triton_version": triton.__version__,
                   "triton_key": hashlib.sha256(triton_key().encode()).hexdigest()}
    owners: dict[str, tuple[str, str]] = {}  # kernel module name -> (variant, config id)
    with compiler_mode():
        pkg = KernelPackage(root)
        for variant, entry in pkg.table.data["variants"].items():
            for config_id in entry["configs"]:  # imported with the interpreter off: JITFunctions
                module = pkg.module(variant, config_id)
                owners[module.__name__] = (variant, config_id)
                relative = pkg.table.config_entry(variant, config_id)["module"]
                for value in vars(module).values():
                    if isinstance(value, JITFunction):  # line info names the file inside the package
                        value.file_name = f"{package}/{relative}"
    env.interpreter_mode = lambda: True  # CPU tensors take the kernel path (compiled for the stand-in target)
    seen: list[dict[str, Any]] = []
    jit_key: list[str] = []  # the JIT's in-memory key of the specialisation being compiled

    def before_compile(**kwargs: Any) -> None:  # the JIT calls this just before `compile`, which calls listener
        jit_key[:] = [jit_key_digest(kwargs["key"])]

    def listener(src, metadata, metadata_group, times, cache_hit):  # triton's compilation listener
        variant, config_id = owners[src.fn.module]
        seen.append({"variant": variant, "config": config_id, "kernel": metadata["name"], "hash": metadata["hash"],
                     "group": dict(metadata_group), "options": {k: metadata[k] for k in ("num_warps", "num_stages")},
                     "jit_keys": list(jit_key)})

    triton.knobs.runtime.jit_cache_hook = before_compile
    triton.knobs.compilation.listener = listener
    for line in sys.stdin:
        job = json.loads(line)
        with active_target(arch):
            triton_info["backend_key"] = backend_key()  # ptxas' version and the arch
            exercise(pkg, job["variant"], job["pick"])
    triton.knobs.compilation.listener = triton.knobs.runtime.jit_cache_hook = None
    for entry in seen:
        sys.stdout.write(json.dumps({**_copy_binary(root, arch, entry), "triton": triton_info}) + "\n")


def _copy_binary(root: Path, arch: int, entry: dict[str, Any]) -> dict[str, Any]:
    """Copy the binary and Triton's metadata of one compiled kernel into the package; describe them."""
    folder = root / "binaries" / f"sm{arch}" / entry["hash"]
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, path in sorted(entry["group"].items()):
        if name.endswith((".cubin", ".json")) and not name.startswith("__grp__"):
            data = Path(path).read_bytes()
            (folder / name).write_bytes(data)
            files[name] = hashlib.sha256(data).hexdigest()
    config = json.loads((root / "tables.json").read_text())["variants"][entry["variant"]]["configs"][entry["config"]]
    return {"variant": entry["variant"], "config": entry["config"], "kernel": entry["kernel"], "hash": entry["hash"],
            "options": entry["options"], "jit_keys": entry["jit_keys"], "source_sha256": config["sha256"],
            "files": files,
            "bytes": sum((folder / n).stat().st_size for n in files)}


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
