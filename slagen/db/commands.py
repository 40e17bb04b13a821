"""The `slagen db ...` commands as plain functions returning dataclasses; the click layer renders them.

Each takes `url=None` for the default database (`SLAGEN_DB`, else a SQLite file under the cache).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from slagen.env import default_db_url

from .engine import create_store_engine, database_errors, display_url
from .jsonl import read_tuning_file
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
    """Counts, schema version and URL (`slagen db info`); only reads: a missing database is an error."""
    url = url or default_db_url()
    with TuningStore(url, create=False) as store, database_errors(url):
        return store.info()


def db_upgrade(url: str | None = None) -> UpgradeResult:
    """Migrate the database to this slagen's schema, keeping every row (`slagen db upgrade`).

    A database slagen never wrote is created; one from a newer slagen is refused.
    """
    url = url or default_db_url()
    engine = create_store_engine(url)
    try:
        with database_errors(url):
            return upgrade_schema(engine, url)
    finally:
        engine.dispose()


def db_export(path: str | os.PathLike, url: str | None = None, *, device_name: str | None = None) -> ExportResult:
    """Write the database (or one GPU's trials) to a JSONL file (`slagen db export FILE`)."""
    url = url or default_db_url()
    with TuningStore(url, create=False) as store, database_errors(url):
        count = store.export_jsonl(path, device_name=device_name)
    return ExportResult(os.fspath(path), display_url(url), count, device_name)


def db_import(path: str | os.PathLike, url: str | None = None) -> AddResult:
    """Validate a JSONL file completely, then add its trials (`slagen db import FILE`); idempotent."""
    url = url or default_db_url()
    content = read_tuning_file(path)  # the whole file is checked before the database is even opened
    with TuningStore(url) as store, database_errors(url):
        return store.add_records(content.trials, content.variants, source=content.path)


def db_merge(other_url: str, url: str | None = None) -> AddResult:
    """Add every trial of another database (`slagen db merge OTHER_URL`); deterministic, loses nothing."""
    url = url or default_db_url()
    with TuningStore(other_url, create=False) as other, database_errors(other_url):  # read first: a mistyped
        trials, specs = other.trials(), other.variant_specs()  # source must not create the destination either
    with TuningStore(url) as store, database_errors(url):
        return store.add_records(trials, specs, source=display_url(other_url))
