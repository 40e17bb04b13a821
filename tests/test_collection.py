"""Every folder of tests is collected: pytest skips folders matching `norecursedirs` (its default list has
"build", which hid tests/build, now tests/packaging, from every full run until session 7)."""

from fnmatch import fnmatch
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_no_test_folder_is_skipped_by_norecursedirs(request):
    patterns = request.config.getini("norecursedirs")
    folders = {p.parent for p in HERE.rglob("test_*.py")} - {HERE}
    hidden = sorted(str(f.relative_to(HERE)) for f in folders
                    if any(fnmatch(part, pat) for part in f.relative_to(HERE).parts for pat in patterns))
    assert not hidden, f"pytest does not recurse into {hidden} (norecursedirs {patterns}): rename them"
