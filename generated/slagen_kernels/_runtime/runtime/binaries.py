"""Kernels a package ships compiled (`binaries/sm<arch>.json` and `binaries/sm<arch>/<hash>/`), handed to Triton.

`slagen build --compile-for` compiled them with Triton's own JIT for a stand-in of the target GPU and recorded,
for each, the key Triton's cache files it under. Before a kernel module is first imported, `seed` puts that
module's binaries into Triton's cache (through Triton's cache manager, so TRITON_CACHE_DIR and custom
managers apply) under those keys, when the GPU's target and the triton install are the ones they were built
with; the JIT then finds them as if it had compiled them itself. Anything else (another GPU or triton, a
specialisation that was not shipped) compiles as usual, and is logged once per (kernel, reason): `watch`
chains a hook into Triton's own `jit_cache_hook` (`triton.knobs.runtime.jit_cache_hook` since triton 3.4,
`JITFunction.cache_hook` before, where present), which the JIT calls just before it compiles a specialisation
it does not hold in memory. The manifest records, per shipped binary, the digests of the JIT's own keys for it,
so the hook tells a shipped specialisation from one that is not, before anything compiles. A triton without
either hook logs the package-level mismatch only; a hook installed over ours later silences the per-kernel
lines; a manifest without JIT keys (built before they were recorded) names no unshipped specialisation.

torch and triton only (runtime leaf).
"""

from __future__ import annotations

import collections
import dataclasses
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


def seed(root: Path, package: str, variant: str, config_id: str, module_name: str) -> int:
    """Put the shipped binaries of one kernel module (to be imported as `module_name`) into Triton's cache;
    return how many were new there. Its kernels' compiles are watched from here on (`watch`)."""
    target = current_target()
    if target is None or not shipped_targets(root):
        return 0
    backend, arch = target
    found = manifest(root, arch)
    why = mismatch(found, backend, arch)
    entries = (found or {}).get("kernels", []) if not why else []
    keys: Optional[dict[str, set[str]]] = {} if any("jit_keys" in e for e in entries) or not entries else None
    for entry in entries if keys is not None else []:
        if entry.get("variant") == variant and entry.get("config") == config_id and _well_formed(entry):
            keys.setdefault(entry["kernel"], set()).update(entry.get("jit_keys", []))
    watch(module_name, _Watched(package, variant, f"sm_{arch}", why, keys))
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


@dataclasses.dataclass(frozen=True)
class _Watched:
    """A kernel module whose compiles are logged: why its shipped binaries do not serve this machine ("" when
    they do), and per kernel the digests of the JIT keys shipped for it (None: not recorded)."""

    package: str
    variant: str
    target: str
    why: str
    jit_keys: Optional[dict[str, set[str]]]


_WATCHED: dict[str, _Watched] = {}  # kernel module name -> what was shipped for it
_HOOKED: list[bool] = []


def jit_key_digest(key: Any) -> str:
    """sha256 of the key the JIT files a specialisation under in memory (its specialisation and options)."""
    return hashlib.sha256(str(key).encode()).hexdigest()


def watch(module_name: str, watched: _Watched) -> None:
    """Log (once per kernel and reason) each kernel of `module_name` that Triton compiles instead of finding
    shipped. Chains Triton's jit_cache_hook once per process (after whatever hook was there)."""
    _WATCHED[module_name] = watched
    if _HOOKED:
        return
    import triton
    from triton.runtime.jit import JITFunction

    knobs = getattr(getattr(triton, "knobs", None), "runtime", None)
    owner, attribute = (knobs, "jit_cache_hook") if hasattr(knobs, "jit_cache_hook") else (
        (JITFunction, "cache_hook") if hasattr(JITFunction, "cache_hook") else (None, ""))
    if owner is None:
        return  # this triton offers no hook before a compile: only the package-level line is logged
    previous = getattr(owner, attribute)

    def before_compile(*args: Any, **kwargs: Any) -> Any:
        _log_compile(kwargs.get("fn"), kwargs.get("key"))
        return previous(*args, **kwargs) if previous is not None else None  # True would skip the compile

    setattr(owner, attribute, before_compile)
    _HOOKED.append(True)


def _log_compile(fn: Any, key: Any) -> None:
    watched = _WATCHED.get(getattr(fn, "module", None))
    if watched is None:
        return
    kernel = str(getattr(fn, "name", "?"))
    why = watched.why
    if not why and watched.jit_keys is not None and jit_key_digest(key) not in watched.jit_keys.get(kernel, ()):
        why = "no shipped binary for this specialisation"
    if why:
        from triton import __version__

        log_once(watched.package, "compiled", watched.variant, kernel, why, message=(
            f"{watched.package}: {watched.variant} {kernel}: {why} ({watched.target}, triton {__version__}); "
            "compiling"))


_HASH = re.compile(r"[0-9a-f]{64}")
_KERNEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _well_formed(entry: dict[str, Any]) -> bool:
    kernel, files = entry.get("kernel"), entry.get("files")
    jit_keys = entry.get("jit_keys", [])
    return (isinstance(entry.get("hash"), str) and _HASH.fullmatch(entry["hash"]) is not None
            and isinstance(jit_keys, list) and all(isinstance(k, str) and _HASH.fullmatch(k) for k in jit_keys)
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
            "variants": sorted({k["variant"] for k in kernels}), "bytes": sum(k.get("bytes", 0) for k in kernels),
            "kernels_per_variant": dict(sorted(collections.Counter(k["variant"] for k in kernels).items()))}
    target = current_target()
    report["kernels_here"] = 0  # shipped kernels this machine loads instead of compiling
    if target is None:
        report["this_machine"] = "no GPU driver: the shipped kernels are not used here"
    else:
        why = mismatch(manifest(root, target[1]), *target)
        report["this_machine"] = why or f"{target[0]} sm_{target[1]}: the shipped kernels serve this machine"
        report["kernels_here"] = 0 if why else report["shipped"][f"sm{target[1]}"]["kernels"]
    return report
