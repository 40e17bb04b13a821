"""Alembic environment for slagen's tuning database.

slagen runs migrations programmatically (`slagen.db.schema`), handing over an open connection in
`config.attributes["connection"]`. For developers, `alembic -c slagen/db/alembic.ini revision -m ...`
also works: it connects to `sqlalchemy.url` from that file, or to `SLAGEN_DB` / the default DB.
Never configures logging: library code stays silent.
"""

from __future__ import annotations

from alembic import context

from slagen.db.models import Base
from slagen.db.schema import VERSION_TABLE


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,  # optuna keeps its own alembic_version in a shared database
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_from_url() -> None:
    from slagen.db.engine import create_store_engine
    from slagen.env import default_db_url

    url = context.config.get_main_option("sqlalchemy.url") or default_db_url()
    engine = create_store_engine(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("slagen's migrations run online only (they read the database they change)")
connection = context.config.attributes.get("connection")
if connection is None:
    _run_from_url()
else:
    _run(connection)
