"""Schema versions: read what a database is at, refuse what this code cannot use, upgrade through alembic.

A database carries two marks, written by every revision together: the one-row `schema_version` table
(an integer people can read) and alembic's revision in `slagen_alembic_version` (its own table, because
optuna keeps an `alembic_version` of its own in a database it may share with slagen).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from .engine import display_url, writer_engine
from .errors import SchemaCorruptError, SchemaOutdatedError, SchemaTooNewError

SCHEMA_VERSION = 2  # the version the head revision writes; bump with every new revision
HEAD_REVISION = "0002_trial_host"
VERSION_TABLE = "slagen_alembic_version"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands: `version` and `revision` are None for a database slagen never wrote."""

    version: int | None
    revision: str | None

    @property
    def is_fresh(self) -> bool:
        return self.version is None and self.revision is None


@dataclass(frozen=True)
class UpgradeResult:
    url: str
    from_version: int | None  # None: the database was empty and is now created at head
    to_version: int
    revision: str

    @property
    def changed(self) -> bool:
        return self.from_version != self.to_version


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic config built in code: no alembic.ini is read at runtime."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.lru_cache(maxsize=1)
def known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions())


def read_schema_state(connection: Connection) -> SchemaState:
    tables = set(inspect(connection).get_table_names())
    version = None
    if "slagen_schema_version" in tables:
        version = connection.execute(text("SELECT version FROM slagen_schema_version")).scalar()
    revision = None
    if VERSION_TABLE in tables:
        revision = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
    return SchemaState(version, revision)


def check_schema_state(state: SchemaState, url: str) -> None:
    """Raise unless a database at `state` can be used as it is by this code."""
    where = display_url(url)
    if state.is_fresh:
        return
    if state.version is None or state.revision is None:
        raise SchemaCorruptError(
            f"tuning database {where} has schema_version={state.version} and alembic revision "
            f"{state.revision!r}: one of the two is missing, so its schema cannot be trusted"
        )
    if state.version > SCHEMA_VERSION or state.revision not in known_revisions():
        raise SchemaTooNewError(
            f"tuning database {where} is at schema version {state.version} (revision {state.revision!r}), "
            f"newer than the version {SCHEMA_VERSION} this slagen knows: upgrade slagen to use it"
        )
    if state.version < SCHEMA_VERSION:
        raise SchemaOutdatedError(
            f"tuning database {where} is at schema version {state.version}, this slagen needs "
            f"{SCHEMA_VERSION}: run `slagen db upgrade --db {where}` (keeps every row)"
        )


def upgrade_schema(engine: Engine, url: str, revision: str = "head") -> UpgradeResult:
    """Bring the database to `revision` (head by default) in one transaction; a fresh one is created.

    A database from a newer slagen is refused before alembic sees it.
    """
    with writer_engine(engine).begin() as connection:
        before = read_schema_state(connection)
        if not before.is_fresh and (before.version is None or before.revision is None
                                    or before.version > SCHEMA_VERSION or before.revision not in known_revisions()):
            check_schema_state(before, url)  # raises: half-written, or from a newer slagen
        command.upgrade(alembic_config(connection), revision)
        after = read_schema_state(connection)
    assert after.version is not None and after.revision is not None
    return UpgradeResult(display_url(url), before.version, after.version, after.revision)


def open_schema(engine: Engine, url: str, *, create: bool = True) -> SchemaState:
    """Check the database is usable as it is; create it at head when slagen has never written it (unless
    `create` is False: then such a database is refused, and nothing is written)."""
    with engine.connect() as connection:
        state = read_schema_state(connection)
    if state.is_fresh and not create:
        raise SchemaCorruptError(f"{display_url(url)} is not a slagen tuning database (no slagen tables); "
                                 "nothing was written to it")
    if state.is_fresh:
        try:
            upgrade_schema(engine, url)
        except Exception:
            # Another process may have created it at the same moment: fine if it is now at head.
            with engine.connect() as connection:
                state = read_schema_state(connection)
            if state.is_fresh:
                raise
        with engine.connect() as connection:
            state = read_schema_state(connection)
    check_schema_state(state, url)
    return state
