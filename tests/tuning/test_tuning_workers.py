"""Several worker processes on one study: nothing lost, nothing measured or recorded twice."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from slagen.tuning import H100_SXM, SyntheticCost, build_space, tune

from tuning_helpers import OPTIMUM, SHAPE, SPEC, toy_plan


def _run_two_workers(url: str, log_path, sampler: str, budget: int | None):
    from slagen.db import TuningStore

    plan = toy_plan()
    measure = SyntheticCost(OPTIMUM, sleep_s=0.02, log_path=str(log_path))
    events = []
    with TuningStore(url) as store:
        report = tune(SPEC, [SHAPE], store=store, device=H100_SXM, plans={"forward": plan}, measure=measure,
                      sampler=sampler, budget_trials=budget, workers=2, seed=5, listener=events.append)
        recorded = [json.dumps(t.config, sort_keys=True, separators=(",", ":")) for t in store.trials()]
    measured = log_path.read_text().split()
    return plan, report, recorded, measured, events


def _check(plan, report, recorded, measured, events, expected):
    assert len(measured) == expected and len(set(measured)) == expected  # each config measured once
    assert Counter(recorded) == Counter(measured)  # every measurement recorded exactly once
    (search,) = report.searches
    assert sum(search.trials_by_status.values()) == expected
    trial_events = [e for e in events if e.kind == "trial"]
    assert len(trial_events) == expected and trial_events[-1].done == expected
    assert set(measured) <= {c.to_json() for c in build_space(plan, H100_SXM, "bfloat16").configs}


@pytest.mark.parametrize("sampler,budget", [("grid", None), ("tpe", 10)])
def test_two_workers_on_one_sqlite_file(tmp_path, sampler, budget):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    plan, report, recorded, measured, events = _run_two_workers(url, tmp_path / "measured.log", sampler, budget)
    _check(plan, report, recorded, measured, events, 24 if budget is None else budget)
    if budget is None:
        assert report.searches[0].best_config == OPTIMUM
    from sqlalchemy import create_engine, inspect

    tables = set(inspect(create_engine(url)).get_table_names())
    assert {"slagen_trials", "trials"} <= tables  # Optuna's study shares the store's database


@pytest.mark.postgres
def test_two_workers_on_postgres(tmp_path):
    url = os.environ.get("SLAGEN_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("SLAGEN_TEST_POSTGRES_URL is not set (scripts/postgres_for_tests.sh starts a server)")
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"slagen_tune_{uuid.uuid4().hex[:10]}"  # a database of its own, dropped afterwards
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        own = make_url(url).set(database=name).render_as_string(hide_password=False)
        plan, report, recorded, measured, events = _run_two_workers(own, tmp_path / "measured.log", "tpe", 10)
        _check(plan, report, recorded, measured, events, 10)
        assert report.searches[0].best_ms is not None
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
