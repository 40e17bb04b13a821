"""Merging databases: the union of trials, deterministic, commutative, idempotent; best recomputed."""

from __future__ import annotations

import dataclasses

import pytest
from db_testdata import H100, LINEAR_FWD
from sqlalchemy import create_engine, text

from slagen.db import SchemaTooNewError, TuningStore


def _export(store, path):
    store.export_jsonl(path)
    return path.read_bytes()


@pytest.fixture
def two_dbs(new_db_url, trials):
    """Two databases sharing some trials (copied between them) and each with trials of its own."""
    url_a, url_b = new_db_url("a"), new_db_url("b")
    with TuningStore(url_a) as a, TuningStore(url_b) as b:
        shared = [trials.kwargs(config={"shared": i}, median_ms=1.5 + i / 10) for i in range(6)]
        for kwargs in shared:
            a.record_trial(**kwargs)
            b.record_trial(**kwargs)
        trials.fill(a, 20, seed=0, host="host-a")
        trials.fill(b, 20, seed=3, host="host-b")
    return url_a, url_b


def test_merge_is_the_union(two_dbs):
    url_a, url_b = two_dbs
    with TuningStore(url_a) as a, TuningStore(url_b) as b:
        expected = {t.trial_uid: t for t in a.trials() + b.trials()}
        result = a.merge(url_b)
        assert (result.trials_read, result.trials_added, result.trials_duplicate) == (26, 20, 6)
        assert sorted(a.trials(), key=lambda t: t.trial_uid) == sorted(expected.values(), key=lambda t: t.trial_uid)
        for best in a.best_configs():
            group = [t for t in expected.values() if t.group == best.trial.group and t.status == "ok"]
            assert best.trial == min(group, key=lambda t: (t.median_ms, t.trial_uid))
        assert len(b.trials()) == 26  # the source is only read


def test_merge_is_commutative_and_idempotent(two_dbs, new_db_url, tmp_path):
    url_a, url_b = two_dbs
    texts = []
    for name, first, second in (("ab", url_a, url_b), ("ba", url_b, url_a)):
        with TuningStore(new_db_url(name)) as merged:
            merged.merge(first)
            merged.merge(second)
            texts.append(_export(merged, tmp_path / f"{name}.jsonl"))
            assert merged.merge(second).trials_added == 0
            assert _export(merged, tmp_path / f"{name}2.jsonl") == texts[-1]
    assert texts[0] == texts[1]


def test_same_key_on_same_device_keeps_all_trials_and_best_is_recomputed(new_db_url, trials):
    url_a, url_b = new_db_url("a"), new_db_url("b")
    with TuningStore(url_a) as a, TuningStore(url_b) as b:
        trials.record(a, config={"BT": 64}, median_ms=2.0, host="host-a")
        trials.record(a, config={"BT": 32}, median_ms=1.5, host="host-a")
        trials.record(b, config={"BT": 64}, median_ms=1.2, host="host-b")  # same config, timed elsewhere
        trials.record(b, config={"BT": 16}, status="mismatch", median_ms=0.1, host="host-b")
        a.merge(url_b)
        assert len(a.trials(kernel=LINEAR_FWD, device=H100)) == 4
        best = a.best_config(LINEAR_FWD, device=H100, shape_bucket="bh32_t4096", dtype="bfloat16")
        assert (best.config, best.median_ms, best.trial.host) == ({"BT": 64}, 1.2, "host-b")


def test_records_from_another_driver_or_triton_stay_separate(new_db_url, trials):
    url_a, url_b = new_db_url("a"), new_db_url("b")
    other_stack = dataclasses.replace(H100, driver_version="560.1", triton_version="3.3.0")
    with TuningStore(url_a) as a, TuningStore(url_b) as b:
        trials.record(a, median_ms=2.0)
        trials.record(b, device=other_stack, median_ms=1.0)
        a.merge(url_b)
        assert a.info().devices == 2
        assert a.best_config(LINEAR_FWD, device=H100, shape_bucket="bh32_t4096", dtype="bfloat16").median_ms == 2.0
        assert a.best_config(LINEAR_FWD, device=other_stack, shape_bucket="bh32_t4096",
                             dtype="bfloat16").median_ms == 1.0


def test_merge_from_a_newer_schema_is_refused(new_db_url, trials):
    url_a, url_b = new_db_url("a"), new_db_url("b")
    with TuningStore(url_a) as a, TuningStore(url_b) as b:
        trials.record(b)
    engine = create_engine(url_b)
    with engine.begin() as connection:
        connection.execute(text("UPDATE slagen_alembic_version SET version_num = '0007_from_the_future'"))
    engine.dispose()
    with TuningStore(url_a) as a:
        with pytest.raises(SchemaTooNewError, match="0007_from_the_future"):
            a.merge(url_b)
        assert a.info().trials == 0
