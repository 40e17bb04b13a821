"""What `pip install <package folder>` leaves inside a package slagen built, recognised exactly, so that a
rebuild may replace the folder.

pip (>= 21.3) builds a local project inside its own folder, through the package's build backend
(setuptools), which leaves two folders there: `build/` (`build/lib/<pkg>/...`, copies of the package's files,
and `build/bdist.<platform>/`, empty once the wheel is made) and `<pkg>.egg-info/` (metadata written from
pyproject.toml and the list of the package's files). setuptools can only be told to put them elsewhere
statically, relative to the project (its `[tool.distutils]` table, still experimental), and anywhere outside
the package folder would be a folder of the user's; so the package leaves them where setuptools puts them,
and a build recognises them instead.

They count as setuptools' output, and may go with the package, only when every file in them is what setuptools
writes from this package's own files: each copy under `build/` byte for byte a file the marker lists, each
file of the egg-info one of those setuptools writes, with the name, version, summary and dependencies of the
package's (unchanged) pyproject.toml and a file list naming only the package's files. Anything else there (a
file a user added or edited, a link, another project's metadata) is not, and the build refuses as for any file.
"""

from __future__ import annotations

import email.parser
import hashlib
import tomllib
from pathlib import Path
from typing import Any, Optional

BUILD = "build"
EGG_INFO_FILES = ("PKG-INFO", "SOURCES.txt", "dependency_links.txt", "requires.txt", "top_level.txt")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plain(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def recognised(target: Path, files: dict[str, Path], expected: dict[str, Optional[str]], package: str) -> set[str]:
    """The relative paths among `files` (those the marker does not list) that are setuptools' build output from
    this package; any other file (the build refuses it) is left out."""
    project = _project(target, expected)
    if project is None or not package.isidentifier():
        return set()
    egg = f"{package}.egg-info/"
    found = set()
    for rel, path in files.items():
        if rel in expected:
            continue
        if rel.startswith(BUILD + "/") and _is_build_copy(rel, path, expected, package):
            found.add(rel)
        elif rel.startswith(egg) and _is_egg_info(rel[len(egg):], path, project, expected, package):
            found.add(rel)
    return found


def _project(target: Path, expected: dict[str, Optional[str]]) -> Optional[dict[str, Any]]:
    """The [project] table of the package's pyproject.toml, when the marker lists it and it is unchanged."""
    path = target / "pyproject.toml"
    if not expected.get("pyproject.toml") or not _plain(path) or _sha256(path) != expected["pyproject.toml"]:
        return None
    try:
        return tomllib.loads(path.read_text())["project"]
    except (tomllib.TOMLDecodeError, KeyError, UnicodeDecodeError):
        return None


def _is_build_copy(rel: str, path: Path, expected: dict[str, Optional[str]], package: str) -> bool:
    """`build/lib/<package>/<file>` (or `build/bdist.<platform>/wheel/<package>/<file>`, a wheel build cut
    short): a byte-equal copy of a file the marker lists."""
    parts = rel.split("/")
    if parts[1:3] == ["lib", package]:
        inner = parts[3:]
    elif parts[1].startswith("bdist.") and parts[2:4] == ["wheel", package]:
        inner = parts[4:]
    else:
        return False
    sha = expected.get("/".join(inner))
    return bool(inner) and sha is not None and _plain(path) and _sha256(path) == sha


def _is_egg_info(name: str, path: Path, project: dict[str, Any], expected: dict[str, Optional[str]],
                 package: str) -> bool:
    """One file of `<package>.egg-info/`, holding what setuptools writes there from this package."""
    if name not in EGG_INFO_FILES or not _plain(path):
        return False
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return False
    dependencies = list(project.get("dependencies", []))
    own = set(expected) | {f"{package}.egg-info/{name}" for name in EGG_INFO_FILES}
    checks = {
        "top_level.txt": lambda: text.split() == [package],
        "dependency_links.txt": lambda: text.strip() == "",
        "requires.txt": lambda: text.split() == dependencies,
        "SOURCES.txt": lambda: all(line.removeprefix("./") in own for line in text.splitlines()),
        "PKG-INFO": lambda: _is_metadata(text, project),
    }
    return checks[name]()


def _is_metadata(text: str, project: dict[str, Any]) -> bool:
    """PKG-INFO holds the package's own core metadata and nothing else (no description body)."""
    message = email.parser.Parser().parsestr(text)
    wanted = {"Name": [project.get("name")], "Version": [project.get("version")],
              "Summary": [project.get("description")], "Requires-Python": [project.get("requires-python")],
              "Requires-Dist": list(project.get("dependencies", []))}
    keys = set(message.keys())
    if not {"Name", "Version"} <= keys <= set(wanted) | {"Metadata-Version"} or message.get_payload().strip():
        return False
    return all(message.get_all(key, []) == wanted[key] for key in keys if key != "Metadata-Version")
