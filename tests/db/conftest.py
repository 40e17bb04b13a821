"""Shared fixtures for the tuning-database tests: backends, fresh databases, and a trial factory.

Every store test runs on SQLite; the `postgres` ones also on PostgreSQL when SLAGEN_TEST_POSTGRES_URL
names a server (`eval "$(scripts/postgres_for_tests.sh start)"`), each test in a database of its own.
"""

from __future__ import annotations

import os
import uuid
from typing import Callable

import pytest
from db_testdata import POSTGRES_ENV, TrialFactory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from slagen.db import TuningStore


@pytest.fixture
def trials() -> TrialFactory:
    return TrialFactory()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request) -> str:
    if request.param == "postgres" and not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"set {POSTGRES_ENV} to run against PostgreSQL (scripts/postgres_for_tests.sh start)")
    return request.param


@pytest.fixture
def new_db_url(backend, tmp_path) -> Callable[[str], str]:
    """Makes URLs of fresh, empty databases on the test's backend.

    On PostgreSQL each is a schema of its own, selected through libpq's `search_path` option: creating
    a schema takes milliseconds where CREATE DATABASE takes most of a second.
    """
    created: list[str] = []
    admin_url = os.environ.get(POSTGRES_ENV, "")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT") if backend == "postgres" else None

    def make(name: str = "tuning") -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        schema = f"slagen_t_{name}_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        created.append(schema)
        url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    yield make
    if admin is not None:
        with admin.connect() as connection:
            for schema in created:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(new_db_url) -> TuningStore:
    with TuningStore(new_db_url("main")) as opened:
        yield opened
