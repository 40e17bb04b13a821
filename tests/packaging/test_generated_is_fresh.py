"""generated/ is reproducible: rebuilding the shipped variants from templates + tuning_db/ changes nothing."""

from pathlib import Path

from slagen import api
from slagen.spec import SHIPPED_VARIANTS

ROOT = Path(__file__).resolve().parents[2]


def test_rebuild_of_shipped_package_changes_nothing(tmp_path):
    api.build(list(SHIPPED_VARIANTS), gpu="all", out_dir=str(tmp_path), tuning_dir=str(ROOT / "tuning_db"))
    fresh, shipped = tmp_path / "slagen_kernels", ROOT / "generated" / "slagen_kernels"
    files = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*")
                                if p.is_file() and "__pycache__" not in p.parts)
    assert files(fresh) == files(shipped), "file list differs: run `bash scripts/main.sh` and commit generated/"
    stale = [name for name in files(fresh) if (fresh / name).read_bytes() != (shipped / name).read_bytes()]
    assert not stale, f"generated/ is stale in {stale[:5]}: run `bash scripts/main.sh` and commit generated/"
