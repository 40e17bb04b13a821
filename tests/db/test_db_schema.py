"""Schema versions: fresh databases at head, old ones upgraded keeping their rows, newer ones refused."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from slagen.db import SCHEMA_VERSION, SchemaCorruptError, SchemaOutdatedError, SchemaTooNewError, TuningStore
from slagen.db.commands import db_upgrade
from slagen.db.models import Base
from slagen.db.schema import HEAD_REVISION, VERSION_TABLE, alembic_config, upgrade_schema

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _load_fixture_maker():
    spec = importlib.util.spec_from_file_location("make_old_db", FIXTURES / "make_old_db.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_old_db = _load_fixture_maker()


def _execute(url: str, sql: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(sql))
    engine.dispose()


def test_a_fresh_database_is_created_at_head(new_db_url):
    with TuningStore(new_db_url("fresh")) as store:
        info = store.info()
    assert (info.schema_version, info.revision) == (SCHEMA_VERSION, HEAD_REVISION)


def test_models_match_the_migrations(new_db_url):
    url = new_db_url("compare")
    TuningStore(url).close()
    engine = create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_an_unknown_alembic_revision_is_refused_as_newer_naming_both(new_db_url):
    url = new_db_url("unknown_rev")
    TuningStore(url).close()
    _execute(url, f"UPDATE {VERSION_TABLE} SET version_num = '0099_from_the_future'")
    message = rf"'0099_from_the_future', newer .*'{HEAD_REVISION}', schema version {SCHEMA_VERSION}.*upgrade slagen"
    with pytest.raises(SchemaTooNewError, match=message):
        TuningStore(url)
    with pytest.raises(SchemaTooNewError, match=message):
        db_upgrade(url)


def test_the_schema_version_is_read_from_alembics_revisions_only(new_db_url):
    """One mark: alembic's revision; the version is its place in the chain of migrations."""
    from slagen.db.schema import revision_chain, schema_version_of

    assert revision_chain()[0] == make_old_db.V1_REVISION and revision_chain()[-1] == HEAD_REVISION
    assert [schema_version_of(r) for r in revision_chain()] == list(range(1, SCHEMA_VERSION + 1))
    url = new_db_url("one_mark")
    TuningStore(url).close()
    engine = create_engine(url)
    from sqlalchemy import inspect

    assert not {"slagen_schema_version", "schema_version"} & set(inspect(engine).get_table_names())
    engine.dispose()


def _old_database(backend: str, new_db_url, tmp_path) -> str:
    if backend == "sqlite":
        path = tmp_path / "old.db"
        shutil.copy(FIXTURES / "tuning_schema_v1.db", path)
        return f"sqlite:///{path}"
    url = new_db_url("old")
    engine = create_engine(url)
    upgrade_schema(engine, url, revision=make_old_db.V1_REVISION)
    with engine.begin() as connection:
        make_old_db.populate_v1(connection)
    engine.dispose()
    return url


def test_an_old_schema_asks_for_slagen_db_upgrade(backend, new_db_url, tmp_path):
    url = _old_database(backend, new_db_url, tmp_path)
    message = rf"schema version 1, this slagen needs {SCHEMA_VERSION}: run `slagen db upgrade"
    with pytest.raises(SchemaOutdatedError, match=message):
        TuningStore(url)


def test_upgrade_from_the_old_fixture_keeps_every_row(backend, new_db_url, tmp_path):
    url = _old_database(backend, new_db_url, tmp_path)
    result = db_upgrade(url)
    assert (result.from_version, result.to_version, result.revision) == (1, SCHEMA_VERSION, HEAD_REVISION)
    expected = make_old_db.v1_trials()
    with TuningStore(url) as store:
        kept = store.trials()
        assert sorted(kept, key=lambda t: t.trial_uid) == sorted(expected, key=lambda t: t.trial_uid)
        assert all(t.host is None for t in kept)
        fwd, rec = make_old_db.KERNELS
        group = dict(device=make_old_db.DEVICE, shape_bucket="bh32_t4096", dtype="bfloat16")
        assert store.best_config(fwd, **group).config == {"BT": 32, "BK": 64, "num_warps": 4}
        assert store.best_config(rec, **group).median_ms == 0.05
        best_before = store.best_configs()
        store.recompute_best()
        assert store.best_configs() == best_before
        store.record_trial(fwd, spec=make_old_db.SPEC, device=make_old_db.DEVICE, shape_bucket="bh32_t4096",
                           dtype="bfloat16", config={"BT": 16}, status="ok", median_ms=0.5, host="new-host")
        assert store.best_config(fwd, **group).trial.host == "new-host"
        assert store.variant_specs() == {make_old_db.SPEC_HASH: make_old_db.SPEC}
    assert db_upgrade(url).changed is False


def test_the_checked_in_fixture_is_what_the_script_makes(tmp_path):
    made = tmp_path / "v1.db"
    make_old_db.make_old_db(made)
    dump = lambda path: sorted(_dump(path))  # noqa: E731
    assert dump(made) == dump(FIXTURES / "tuning_schema_v1.db")


def _dump(path: Path):
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def test_upgrade_creates_a_database_slagen_never_wrote(new_db_url):
    result = db_upgrade(new_db_url("created"))
    assert (result.from_version, result.to_version) == (None, SCHEMA_VERSION)


def test_optuna_can_share_the_database(new_db_url, trials):
    optuna = pytest.importorskip("optuna")
    url = new_db_url("shared")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=url, study_name="s")  # optuna's own tables and alembic_version
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    with TuningStore(url) as store:
        trials.record(store)
        assert store.info().trials == 1
    assert len(optuna.load_study(storage=url, study_name="s").trials) == 2
    with TuningStore(url) as store:
        assert store.info().schema_version == SCHEMA_VERSION


def test_a_database_missing_its_version_row_is_refused(new_db_url):
    url = new_db_url("corrupt")
    TuningStore(url).close()
    _execute(url, f"DELETE FROM {VERSION_TABLE}")
    with pytest.raises(SchemaCorruptError, match="no alembic revision.*cannot be trusted"):
        TuningStore(url)
    with pytest.raises(SchemaCorruptError):
        db_upgrade(url)


def test_downgrade_then_upgrade_round_trips(new_db_url, trials):
    url = new_db_url("down")
    with TuningStore(url) as store:
        trials.fill(store, 10)
        before = store.trials()
    engine = create_engine(url)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), make_old_db.V1_REVISION)
    engine.dispose()
    with pytest.raises(SchemaOutdatedError):
        TuningStore(url)
    db_upgrade(url)
    with TuningStore(url) as store:  # every trial is back; only the host column was dropped
        after = store.trials()
        strip = lambda t: dataclasses.replace(t, host=None, trial_uid="")  # noqa: E731
        assert [strip(t) for t in before] == [strip(t) for t in after]
        assert [t.trial_uid for t in after] == [t.trial_uid for t in before]


def test_an_in_memory_database_works(trials):
    with TuningStore("sqlite://") as store:
        trials.record(store)
        assert store.info().trials == 1


def test_importing_the_store_pulls_in_no_kernel_stack():
    code = ("import sys, slagen.db, slagen.db.commands; "
            "bad = [m for m in ('torch', 'triton', 'jinja2', 'optuna', 'slagen.codegen', 'slagen.tuning') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
