"""Engines for any SQLAlchemy URL; SQLite gets WAL, a busy timeout and explicit transactions.

Several tuning processes may write one SQLite file at once. WAL lets readers run beside the writer, the
busy timeout makes a writer wait for the lock instead of failing, and write transactions start with
`BEGIN IMMEDIATE` so a writer never has to upgrade a read lock (which SQLite answers with an
immediate SQLITE_BUSY, whatever the timeout).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from .errors import ConnectionFailedError

SQLITE_BUSY_TIMEOUT_MS = 60_000
_WRITE_OPTION = "slagen_write"


def display_url(url: str) -> str:
    """The URL with any password hidden, for messages and `info`."""
    return parse_url(url).render_as_string(hide_password=True)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_file(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def parse_url(url: str):
    """The parsed URL, or an error naming `--db` and the value (no password) when it is not one."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as err:
        shown = url.split("@")[-1] if "@" in url else url
        raise ConnectionFailedError(f"--db: expected a SQLAlchemy URL such as sqlite:///tuning.db or "
                                    f"postgresql+psycopg2://user@host/db, got {shown!r} ({err})") from None
    return parsed


def _check_sqlite_path(url: str, path: Path, *, create: bool) -> None:
    """One-line errors for a SQLite path that cannot be a database; the folder is made only when `create`."""
    path = path.expanduser()
    if path.is_dir():
        raise ConnectionFailedError(f"--db: {display_url(url)} names a folder, not a SQLite file")
    if not create:
        if not path.is_file():
            raise ConnectionFailedError(f"--db: no tuning database at {display_url(url)} (nothing is created by a "
                                        "command that only reads; check the path)")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConnectionFailedError(f"--db: cannot create the folder of {display_url(url)}: "
                                    f"{err.strerror or err}") from None
    if path.parent.is_file():
        raise ConnectionFailedError(f"--db: {display_url(url)}: {str(path.parent)!r} is a file, not a folder")


def create_store_engine(url: str, *, create: bool = True) -> Engine:
    """An engine for `url`. A SQLite file's folder is created if missing, unless `create` is False (commands
    that only read): then a missing file is an error, never a new empty database."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return _checked_server_engine(url)
    path = _sqlite_file(url)
    if path is None:  # in memory: one shared connection, or every checkout would see a new empty DB
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        _check_sqlite_path(url, path, create=create)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    _configure_sqlite(engine, wal=path is not None)
    return engine


def _checked_server_engine(url: str) -> Engine:
    """A server database's engine, after one probe connection: a missing driver or an unreachable server
    is reported here, in one line, rather than as a traceback from the first query."""
    from sqlalchemy.exc import OperationalError

    try:
        engine = create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as err:
        raise ConnectionFailedError(f"--db: the database driver {err.name!r} for {display_url(url)} is not "
                                    f"installed (for PostgreSQL: pip install 'slagen[postgres]')") from None
    try:
        with engine.connect():
            pass
    except OperationalError as err:
        engine.dispose()
        reason = str(err.orig if err.orig is not None else err).strip().splitlines()[0]
        raise ConnectionFailedError(f"--db: cannot connect to {display_url(url)}: {reason}") from None
    return engine


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    use_sqlite_locking(engine, wal=wal)


def use_sqlite_locking(engine: Engine, *, wal: bool, always_immediate: bool = False) -> None:
    """The one SQLite hook of slagen's engines and of Optuna's engine on the same file (`tuning.search`):
    a busy timeout, foreign keys, WAL for a file, and transactions that take the write lock up front
    (`BEGIN IMMEDIATE`) for a `writer_engine`, or for every transaction with `always_immediate` (Optuna's
    writes start as reads). Connections opened before the hook are dropped, so none skips it."""
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # the driver stops issuing BEGIN; the "begin" hook does
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        immediate = always_immediate or connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    engine.dispose()


def writer_engine(engine: Engine) -> Engine:
    """The same engine, with transactions that take SQLite's write lock up front (no-op elsewhere)."""
    return engine.execution_options(**{_WRITE_OPTION: True})


@contextlib.contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Driver errors a user can cause (a file that is not a database, a read-only file or folder, a full
    disk) as one-line `ConnectionFailedError`s naming the database."""
    from sqlalchemy.exc import DatabaseError

    try:
        yield
    except DatabaseError as err:
        reason = str(err.orig if getattr(err, "orig", None) is not None else err).strip().splitlines()[0]
        raise ConnectionFailedError(f"--db: {display_url(url)}: {reason}") from None
