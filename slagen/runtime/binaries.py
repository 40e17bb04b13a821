"""Kernels a package ships compiled (`binaries/sm<arch>.json` and `binaries/sm<arch>/<hash>/`), handed to Triton.

`slagen build --compile-for` compiled them with Triton's own JIT for a stand-in of the target GPU and recorded,
for each, the key Triton's cache files it under. Before a kernel module is first imported, `seed` puts that
module's binaries into Triton's cache (through Triton's cache manager, so TRITON_CACHE_DIR and custom
managers apply) under those keys, when the GPU's target and the triton install are the ones they were built
with; the JIT then finds them as if it had compiled them itself. Anything else (another GPU or triton, a
specialisation that was not shipped) compiles as usual; a mismatch is logged once.

torch and triton only (runtime leaf).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Optional

from .dispatch import log_once


def current_target() -> Optional[tuple[str, int]]:
    """(backend, arch) of Triton's active driver, or None without a GPU driver (or under the interpreter)."""
    try:
        from triton.runtime import driver

        target = driver.active.get_current_target()
    except Exception:  # noqa: BLE001 - no GPU driver: nothing to seed
        return None
    return str(target.backend), int(target.arch)


@functools.lru_cache(maxsize=None)
def triton_identity() -> tuple[str, str]:
    """(version, sha256 of triton's own cache-key salt: its sources, backends and libtriton)."""
    import triton
    from triton.runtime.cache import triton_key

    return triton.__version__, hashlib.sha256(triton_key().encode()).hexdigest()


def backend_key() -> str:
    """sha256 of what Triton's backend adds to its cache keys for the active target (for CUDA: the ptxas
    version and the arch; TRITON_PTXAS_PATH may point at another ptxas)."""
    from triton.compiler.compiler import make_backend
    from triton.runtime import driver

    return hashlib.sha256(make_backend(driver.active.get_current_target()).hash().encode()).hexdigest()


def manifest(root: Path, arch: int) -> Optional[dict[str, Any]]:
    path = root / "binaries" / f"sm{arch}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def shipped_targets(root: Path) -> list[int]:
    return sorted(int(p.stem[2:]) for p in (root / "binaries").glob("sm*.json")) if (root / "binaries").is_dir() else []


def mismatch(found: Optional[dict[str, Any]], backend: str, arch: int) -> str:
    """Why the shipped binaries do not serve this machine ("" when they do): the target, triton's install
    and the backend's own key (ptxas) are what Triton's cache keys hold beyond the kernel itself."""
    if found is None or backend != "cuda":
        return f"no kernels are shipped compiled for {backend} sm_{arch}"
    version, key = triton_identity()
    if found.get("triton_version") != version or found.get("triton_key") != key:
        return (f"the shipped kernels were compiled with triton {found.get('triton_version')} "
                f"(key {str(found.get('triton_key'))[:12]}), this is triton {version} (key {key[:12]})")
    if found.get("backend_key") != backend_key():
        return "the shipped kernels were compiled with another ptxas than this triton uses (TRITON_PTXAS_PATH?)"
    return ""


def seed(root: Path, package: str, variant: str, config_id: str) -> int:
    """Put the shipped binaries of one kernel module into Triton's cache; return how many were new there."""
    target = current_target()
    if target is None or not shipped_targets(root):
        return 0
    backend, arch = target
    found = manifest(root, arch)
    why = mismatch(found, backend, arch)
    if why:
        log_once(package, "binaries", message=f"{package}: {why}; Triton compiles each kernel at its first call.")
        return 0
    from triton.runtime.cache import get_cache_manager

    added = 0
    for entry in found["kernels"]:
        if entry.get("variant") != variant or entry.get("config") != config_id:
            continue
        if not _well_formed(entry):  # the manifest names files to read: nothing outside the package
            log_once(package, "binaries", "entry", message=f"{package}: a malformed entry in binaries/sm{arch}.json "
                                                           "is ignored; Triton compiles that kernel at its first call.")
            continue
        try:
            cache = get_cache_manager(entry["hash"])  # the JIT looks its kernels up under this key
            group = f"{entry['kernel']}.json"
            if cache.get_group(group) is not None:
                continue
            folder = root / "binaries" / f"sm{arch}" / entry["hash"]
            paths = {name: cache.put((folder / name).read_bytes(), name) for name in sorted(entry["files"])}
            cache.put_group(group, paths)
        except (OSError, RuntimeError) as err:  # e.g. a read-only Triton cache: compiling still works
            log_once(package, "binaries", "cache", message=f"{package}: cannot put the shipped kernels into Triton's "
                                                           f"cache ({err}); Triton compiles them at their first call.")
            return added
        added += 1
    return added


_HASH = re.compile(r"[0-9a-f]{64}")
_KERNEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _well_formed(entry: dict[str, Any]) -> bool:
    kernel, files = entry.get("kernel"), entry.get("files")
    return (isinstance(entry.get("hash"), str) and _HASH.fullmatch(entry["hash"]) is not None
            and isinstance(kernel, str) and _KERNEL.fullmatch(kernel) is not None and isinstance(files, dict)
            and set(files) <= {f"{kernel}.cubin", f"{kernel}.json", f"{kernel}.hsaco"})


def shipped_report(root: Path) -> dict[str, Any]:
    """What `slagen doctor --package` shows: the targets shipped, and whether they serve this machine."""
    report: dict[str, Any] = {"shipped": {}}
    for arch in shipped_targets(root):
        found = manifest(root, arch) or {}
        kernels = found.get("kernels", [])
        report["shipped"][f"sm{arch}"] = {
            "gpus": found.get("gpus", []), "triton": found.get("triton_version"), "kernels": len(kernels),
            "variants": sorted({k["variant"] for k in kernels}), "bytes": sum(k.get("bytes", 0) for k in kernels)}
    target = current_target()
    if target is None:
        report["this_machine"] = "no GPU driver: the shipped kernels are not used here"
    else:
        why = mismatch(manifest(root, target[1]), *target)
        report["this_machine"] = why or f"{target[0]} sm_{target[1]}: the shipped kernels serve this machine"
    return report
