"""The `slagen db ...` functions: plain calls returning dataclasses, defaulting to SLAGEN_DB."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from slagen.db import SchemaOutdatedError, StoreInfo, TuningStore
from slagen.db.commands import db_export, db_import, db_info, db_merge, db_upgrade
from slagen.db.schema import upgrade_schema


def test_commands_use_slagen_db_by_default(tmp_path, monkeypatch, trials):
    url = f"sqlite:///{tmp_path / 'deep' / 'folder' / 'default.db'}"
    monkeypatch.setenv("SLAGEN_DB", url)
    with TuningStore(url) as store:
        trials.fill(store, 7)
    info = db_info()
    assert isinstance(info, StoreInfo)
    assert (info.url, info.trials, info.dialect) == (url, 7, "sqlite")


def test_export_import_merge_round(tmp_path, trials, capsys):
    source, target, third = (f"sqlite:///{tmp_path / name}.db" for name in ("source", "target", "third"))
    with TuningStore(source) as store:
        trials.fill(store, 14)
    with TuningStore(third) as store:
        trials.fill(store, 5, seed=100)
    exported = db_export(tmp_path / "out" / "dump.jsonl", source)
    assert (exported.trials, exported.url) == (14, source)
    imported = db_import(exported.path, target)
    assert (imported.trials_added, imported.trials_duplicate) == (14, 0)
    assert db_import(exported.path, target).trials_added == 0
    merged = db_merge(third, target)
    assert (merged.trials_read, merged.trials_added) == (5, 5)
    assert db_info(target).trials == 19
    assert capsys.readouterr() == ("", "")  # library code never prints


def test_export_of_one_gpu(tmp_path, trials):
    url = f"sqlite:///{tmp_path / 'gpus.db'}"
    with TuningStore(url) as store:
        trials.fill(store, 8)
        expected = len(store.trials(device_name="NVIDIA A100-SXM4-80GB"))
    result = db_export(tmp_path / "a100.jsonl", url, device_name="NVIDIA A100-SXM4-80GB")
    assert result.trials == expected and result.device_name == "NVIDIA A100-SXM4-80GB"


def test_upgrade_reports_versions(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    plain = create_engine(url)  # no store: the database must stay at version 1
    upgrade_schema(plain, url, revision="0001_initial")
    plain.dispose()
    with pytest.raises(SchemaOutdatedError, match="slagen db upgrade"):
        db_info(url)
    result = db_upgrade(url)
    assert (result.from_version, result.to_version, result.changed) == (1, 3, True)
    assert db_info(url).schema_version == 3
    assert db_upgrade(url).changed is False
