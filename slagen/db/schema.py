"""Schema versions: read what a database is at, refuse what this code cannot use, upgrade through alembic.

Alembic's revision is the one mark of a database's schema, kept in `slagen_alembic_version` (a table of
its own: optuna keeps an `alembic_version` of its own in a database it may share with slagen). The
schema *version* people read (`slagen db info`, JSONL headers) is the revision's place in the chain of
migrations under `migrations/versions/`: 1 for the first, the head's for this code.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from .engine import display_url, writer_engine
from .errors import SchemaCorruptError, SchemaOutdatedError, SchemaTooNewError

VERSION_TABLE = "slagen_alembic_version"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands: `revision` is None where alembic never wrote one; `has_tables` says whether
    slagen's tables are there anyway (a damaged database)."""

    revision: str | None
    has_tables: bool = False

    @property
    def version(self) -> int | None:
        """The revision's place in the chain (None: no revision, or one this code does not know)."""
        return schema_version_of(self.revision)

    @property
    def is_fresh(self) -> bool:
        return self.revision is None and not self.has_tables


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
def revision_chain() -> tuple[str, ...]:
    """Every revision, first to head."""
    scripts = ScriptDirectory.from_config(alembic_config()).walk_revisions()  # head first
    return tuple(reversed([script.revision for script in scripts]))


def schema_version_of(revision: str | None) -> int | None:
    chain = revision_chain()
    return chain.index(revision) + 1 if revision in chain else None


def head_revision() -> str:
    return revision_chain()[-1]


def head_version() -> int:
    """The schema version of this code: its head revision's place in the chain."""
    return len(revision_chain())


# Read from the migrations, never written by hand: the head revision and its place in the chain.
HEAD_REVISION = head_revision()
SCHEMA_VERSION = head_version()


def read_schema_state(connection: Connection) -> SchemaState:
    tables = set(inspect(connection).get_table_names())
    revision = None
    if VERSION_TABLE in tables:
        revision = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
    return SchemaState(revision, any(t.startswith("slagen_") and t != VERSION_TABLE for t in tables))


def check_schema_state(state: SchemaState, url: str) -> None:
    """Raise unless a database at `state` can be used as it is by this code."""
    where = display_url(url)
    if state.is_fresh:
        return
    if state.revision is None:
        raise SchemaCorruptError(
            f"tuning database {where} has slagen's tables but no alembic revision in {VERSION_TABLE}, "
            "so its schema cannot be trusted"
        )
    if state.version is None:
        raise SchemaTooNewError(
            f"tuning database {where} is at revision {state.revision!r}, newer than this slagen knows (its "
            f"newest is {HEAD_REVISION!r}, schema version {SCHEMA_VERSION}): upgrade slagen to use it"
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
        if not before.is_fresh and before.version is None:
            check_schema_state(before, url)  # raises: damaged, or from a newer slagen
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
