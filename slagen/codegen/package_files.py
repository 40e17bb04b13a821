"""The folder side of `build`: stage a package beside its target, and swap it in only over a package that
slagen wrote itself.

A package carries a marker, `.slagen-package.json`, listing the sha256 of every file of the build. A build
replaces the folder at its target only when the marker is there and every file in the folder is one it
lists, unchanged (or Python's `__pycache__`, or what `pip install <folder>` leaves there built from those
files alone: `pip_artefacts`). Anything else at the target (a user's folder, a plain file, a
link, a package with files added or edited) is refused with a message naming the path. Packages from before
the marker qualify through `tables.json` (its checksum, and the sha256 of each kernel module it lists).
Staging and swap folders are named `.<pkg>.slagen-staging-<pid>-<random>` / `.slagen-old-`; a build removes
such folders left by processes that no longer run (a killed build), and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path

from ..spec import SpecError
from . import pip_artefacts

MARKER = ".slagen-package.json"
STAGING_MARK = ".slagen-staging"  # written first into every staging folder: only folders holding it are ours
_LEGACY_FILES = ("__init__.py", "layers.py", "tables.json", "kernels/__init__.py")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(root: Path) -> dict[str, Path]:
    """Every file under root by relative path, without Python's bytecode caches."""
    found = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts:
            continue
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            found[rel.as_posix()] = path  # a link or a special file: never ours
        elif path.is_file():
            found[rel.as_posix()] = path
    return found


def write_marker(staging: Path, package: str) -> None:
    files = {rel: _sha256(path) for rel, path in sorted(_files(staging).items()) if rel != STAGING_MARK}
    text = json.dumps({"format": 1, "package": package, "files": files}, indent=1, sort_keys=True) + "\n"
    (staging / MARKER).write_text(text)


def _expected_files(target: Path) -> dict[str, str | None] | None:
    """The files (relative path -> sha256, or None when not hashed) a slagen build left at target, or None
    when target carries no valid marker of slagen's."""
    marker = target / MARKER
    if marker.is_file() and not marker.is_symlink():
        try:
            data = json.loads(marker.read_text())
            files = dict(data["files"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None
        return {**files, MARKER: None}
    tables = target / "tables.json"
    if not tables.is_file() or tables.is_symlink():
        return None
    try:
        from ..runtime.dispatch import DispatchTable

        table = DispatchTable.load(tables)  # verifies the checksum
    except Exception:  # noqa: BLE001 - any unreadable table means: not provably ours
        return None
    expected: dict[str, str | None] = {name: None for name in _LEGACY_FILES}
    for variant in table.data.get("variants", {}).values():
        for entry in variant.get("configs", {}).values():
            expected[entry["module"]] = entry["sha256"]
    return expected


def _marker_package(target: Path) -> str | None:
    try:
        package = json.loads((target / MARKER).read_text()).get("package")
    except (OSError, ValueError, AttributeError, UnicodeDecodeError):
        return None
    return package if isinstance(package, str) else None


def check_replaceable(target: Path) -> None:
    """Raise unless `target` is absent or a package slagen built, untouched since."""
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not target.is_dir():
        raise SpecError(f"--out: {str(target)!r} exists and is not a package folder slagen built "
                        f"(a {'link' if target.is_symlink() else 'file'}); move it away or choose another --out/--name")
    expected = _expected_files(target)
    if expected is None:
        raise SpecError(f"--out: {str(target)!r} exists and is not a package slagen built (no {MARKER}); "
                        "slagen replaces only its own packages: move it away or choose another --out/--name")
    files = _files(target)
    package = _marker_package(target)
    artefacts = pip_artefacts.recognised(target, files, expected, package) if package else set()
    for rel, path in sorted(files.items()):
        if rel in artefacts:  # `pip install <folder>`'s build output from this package's own files
            continue
        if rel not in expected:
            pip = " (pip's build/ and egg-info are replaced only while they hold setuptools' output alone)" if (
                rel.startswith(pip_artefacts.BUILD + "/") or rel.split("/")[0].endswith(".egg-info")) else ""
            raise SpecError(f"--out: {str(path)!r} was not written by slagen{pip}; the package at {str(target)!r} "
                            "is not replaced (move the file away, or choose another --out/--name)")
        if path.is_symlink() or not path.is_file():
            raise SpecError(f"--out: {str(path)!r} is not a plain file slagen wrote; the package is not replaced")
        if expected[rel] is not None and _sha256(path) != expected[rel]:
            raise SpecError(f"--out: {str(path)!r} was edited since slagen wrote it; the package at "
                            f"{str(target)!r} is not replaced (keep your copy elsewhere, then delete the folder)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(out_dir: Path, package: str) -> list[Path]:
    """Remove staging and swap folders of `package` left by builds whose process is gone; only folders
    named by slagen's pattern that hold slagen's staging mark."""
    pattern = re.compile(rf"\.{re.escape(package)}\.slagen-(?:staging|old)-(\d+)-[0-9a-f]+")
    removed = []
    for path in out_dir.iterdir():
        match = pattern.fullmatch(path.name)
        if not match or path.is_symlink() or not path.is_dir() or not (path / STAGING_MARK).is_file():
            continue
        if int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def make_staging(out_dir: Path, package: str) -> Path:
    """A fresh staging folder with the user's umask (not mkdtemp's 0700), marked as slagen's."""
    staging = out_dir / f".{package}.slagen-staging-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()  # mode 0o777 & ~umask
    (staging / STAGING_MARK).write_text("a slagen build in progress; removed by the next build if left behind\n")
    return staging


def swap_in(staging: Path, target: Path, package: str) -> None:
    """Replace `target` by `staging` with renames only, so readers never see half a package."""
    (staging / STAGING_MARK).unlink()
    old = None
    if os.path.lexists(target):
        check_replaceable(target)  # again, just before the rename: the folder may have changed meanwhile
        old = target.with_name(f".{package}.slagen-old-{os.getpid()}-{secrets.token_hex(4)}")
        os.replace(target, old)
        (old / STAGING_MARK).write_text("the package this build replaced\n")
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
