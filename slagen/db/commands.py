"""The `slagen db ...` commands as plain functions returning dataclasses; the click layer renders them.

Each takes `url=None` for the default database (`SLAGEN_DB`, else a SQLite file under the cache).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from slagen.env import default_db_url

from .engine import create_store_engine, display_url
from .records import StoreInfo
from .schema import UpgradeResult, upgrade_schema
from .store import AddResult, TuningStore


@dataclass(frozen=True)
class ExportResult:
    path: str
    url: str
    trials: int
    device_name: str | None


def db_info(url: str | None = None) -> StoreInfo:
    """Counts, schema version and URL (`slagen db info`)."""
    with TuningStore(url or default_db_url()) as store:
        return store.info()


def db_upgrade(url: str | None = None) -> UpgradeResult:
    """Migrate the database to this slagen's schema, keeping every row (`slagen db upgrade`).

    A database slagen never wrote is created; one from a newer slagen is refused.
    """
    url = url or default_db_url()
    engine = create_store_engine(url)
    try:
        return upgrade_schema(engine, url)
    finally:
        engine.dispose()


def db_export(path: str | os.PathLike, url: str | None = None, *, device_name: str | None = None) -> ExportResult:
    """Write the database (or one GPU's trials) to a JSONL file (`slagen db export FILE`)."""
    url = url or default_db_url()
    with TuningStore(url) as store:
        count = store.export_jsonl(path, device_name=device_name)
    return ExportResult(os.fspath(path), display_url(url), count, device_name)


def db_import(path: str | os.PathLike, url: str | None = None) -> AddResult:
    """Validate a JSONL file completely, then add its trials (`slagen db import FILE`); idempotent."""
    with TuningStore(url or default_db_url()) as store:
        return store.import_jsonl(path)


def db_merge(other_url: str, url: str | None = None) -> AddResult:
    """Add every trial of another database (`slagen db merge OTHER_URL`); deterministic, loses nothing."""
    with TuningStore(url or default_db_url()) as store:
        return store.merge(other_url)
