"""Class 2 of issue 12: a build never deletes or renames what slagen did not create.

Whatever stands at `--out/--name` (a user's folder, a plain file, a link, a package with a file added or
edited) is refused with exit 2 and a message naming the path, and left exactly as it was; only a package
slagen built (its marker and checksums) is replaced. Stale staging folders of killed builds are cleaned,
and only those. Packages get the user's umask.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from slagen.cli import main
from slagen.codegen.package_files import MARKER, STAGING_MARK


def _build(out: Path, *extra: str):
    return CliRunner().invoke(main, ["build", "linear", "--no-tune", "--out", str(out), *extra])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*")) if not p.is_symlink()}


def _refused(out: Path, *needles: str):
    before = _snapshot(out)
    result = _build(out)
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert message.startswith("slagen: error: --out:") and "\n" not in message
    for needle in needles:
        assert needle in message
    assert _snapshot(out) == before  # nothing deleted, renamed or added, staging included
    return message


@pytest.mark.parametrize("what", ["user_folder", "plain_file", "link", "empty_folder"])
def test_anything_slagen_did_not_build_is_refused_and_kept(tmp_path, what):
    target = tmp_path / "slagen_kernels"
    if what == "user_folder":
        target.mkdir()
        (target / "thesis.tex").write_text("years of work")
    elif what == "plain_file":
        target.write_text("a file named like the package")
    elif what == "link":
        (tmp_path / "elsewhere").mkdir()
        target.symlink_to(tmp_path / "elsewhere")
    else:
        target.mkdir()
    _refused(tmp_path, str(target))


def test_a_package_slagen_built_is_replaced_but_not_once_a_user_touched_it(tmp_path):
    assert _build(tmp_path).exit_code == 0
    package = tmp_path / "slagen_kernels"
    assert (package / MARKER).is_file()
    assert _build(tmp_path).exit_code == 0  # its own package: replaced
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"bytecode")  # Python's cache does not count
    assert _build(tmp_path).exit_code == 0
    (package / "notes.md").write_text("mine")
    _refused(tmp_path, "notes.md")
    (package / "notes.md").unlink()
    init = package / "__init__.py"
    init.write_text(init.read_text() + "\n# my tweak\n")
    _refused(tmp_path, "__init__.py", "edited")


def test_out_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("x")
    result = _build(out)
    assert result.exit_code == 2 and "--out" in result.output and str(out) in result.output
    assert out.read_text() == "x"


def test_stale_staging_of_a_dead_build_is_removed_and_nothing_else(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".slagen_kernels.slagen-staging-{dead}-abcd1234"
    stale.mkdir()
    (stale / STAGING_MARK).write_text("")
    lookalike = tmp_path / f".slagen_kernels.slagen-staging-{dead}-abcd5678"  # same pattern, no mark: a user's
    lookalike.mkdir()
    alive = tmp_path / f".slagen_kernels.slagen-staging-{os.getppid()}-abcd9999"  # a build still running
    alive.mkdir()
    (alive / STAGING_MARK).write_text("")
    assert _build(tmp_path).exit_code == 0
    assert not stale.exists() and lookalike.exists() and alive.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if "slagen-" in p.name]
    assert sorted(leftovers) == sorted([lookalike.name, alive.name])  # the build left no staging of its own


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_packages_get_the_users_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        assert _build(tmp_path).exit_code == 0
    finally:
        os.umask(old)
    package = tmp_path / "slagen_kernels"
    assert stat.S_IMODE(package.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((package / "tables.json").stat().st_mode) == 0o666 & ~umask
