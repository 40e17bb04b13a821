"""Recording trials and choosing the best: failures are kept and never chosen; ties are deterministic."""

from __future__ import annotations

import dataclasses
import math

import pytest
from db_testdata import A100, GLA_FWD, H100, LINEAR_FWD, LINEAR_SPEC

from slagen.db import STATUSES, RecordError, TuningStore

GROUP = dict(device=H100, shape_bucket="bh32_t4096", dtype="bfloat16")


def test_every_trial_is_kept_failures_included(store, trials):
    for status in STATUSES:
        trials.record(store, status=status, median_ms=2.0 if status == "ok" else None)
    kept = store.trials()
    assert sorted(t.status for t in kept) == sorted(STATUSES)
    assert store.info().trials_by_status == {status: 1 for status in sorted(STATUSES)}


def test_best_is_the_lowest_median_ok_trial(store, trials):
    trials.record(store, config={"BT": 16}, median_ms=3.0)
    fastest = trials.record(store, config={"BT": 32}, median_ms=1.0)
    trials.record(store, config={"BT": 64}, median_ms=2.0)
    best = store.best_config(LINEAR_FWD, **GROUP)
    assert best is not None
    assert best.config == {"BT": 32}
    assert best.trial == fastest
    assert best.median_ms == 1.0


@pytest.mark.parametrize("status", [s for s in STATUSES if s != "ok"])
def test_a_failed_trial_is_never_best_even_when_faster(store, trials, status):
    trials.record(store, config={"BT": 64}, median_ms=2.0)
    trials.record(store, config={"BT": 16}, status=status, median_ms=0.01, max_error=float("inf"))
    assert store.best_config(LINEAR_FWD, **GROUP).config == {"BT": 64}


def test_no_best_when_every_trial_failed(store, trials):
    trials.record(store, status="compile_error", median_ms=None)
    trials.record(store, status="mismatch", median_ms=0.5, max_error=float("nan"))
    assert store.best_config(LINEAR_FWD, **GROUP) is None
    assert store.info().best == 0


def test_ties_go_to_the_smallest_trial_uid_whatever_the_order(store, trials):
    a = trials.record(store, config={"BT": 16}, median_ms=1.0)
    b = trials.record(store, config={"BT": 32}, median_ms=1.0)
    winner = min(a, b, key=lambda t: t.trial_uid)
    assert store.best_config(LINEAR_FWD, **GROUP).trial == winner
    assert store.recompute_best() == 1
    assert store.best_config(LINEAR_FWD, **GROUP).trial == winner


def test_best_is_kept_per_kernel_device_bucket_and_dtype(store, trials):
    trials.record(store, median_ms=1.0)
    trials.record(store, kernel=GLA_FWD, median_ms=2.0)
    trials.record(store, device=A100, median_ms=3.0)
    trials.record(store, shape_bucket="bh8_t1024", median_ms=4.0)
    trials.record(store, dtype="float16", median_ms=5.0)
    assert store.info().best == 5
    assert store.best_config(GLA_FWD, **GROUP).median_ms == 2.0
    assert store.best_config(LINEAR_FWD, device=A100, shape_bucket="bh32_t4096", dtype="bfloat16").median_ms == 3.0
    assert store.best_config(LINEAR_FWD, device=H100, shape_bucket="bh8_t1024", dtype="bfloat16").median_ms == 4.0
    assert store.best_config(LINEAR_FWD, device=H100, shape_bucket="bh32_t4096", dtype="float16").median_ms == 5.0


def test_another_driver_or_triton_version_is_another_device(store, trials):
    newer_triton = dataclasses.replace(H100, triton_version="3.3.0")
    newer_driver = dataclasses.replace(H100, driver_version="560.1")
    trials.record(store, median_ms=1.0)
    trials.record(store, device=newer_triton, median_ms=2.0)
    trials.record(store, device=newer_driver, median_ms=3.0)
    assert store.info().devices == 3
    assert store.best_config(LINEAR_FWD, **GROUP).median_ms == 1.0
    assert store.best_config(LINEAR_FWD, **dict(GROUP, device=newer_triton)).median_ms == 2.0
    assert store.best_config(LINEAR_FWD, **dict(GROUP, device=newer_driver)).median_ms == 3.0


def test_incremental_best_equals_recomputed_best(store, trials):
    trials.fill(store, 60)
    before = store.best_configs()
    assert store.recompute_best() == len(before)
    assert store.best_configs() == before
    for best in before:
        group = store.trials(kernel=best.trial.kernel, device=best.trial.device,
                             shape_bucket=best.trial.shape_bucket, dtype=best.trial.dtype, status="ok")
        assert best.trial == min(group, key=lambda t: (t.median_ms, t.trial_uid))


def test_recording_the_same_trial_twice_stores_it_once(store, trials):
    kwargs = trials.kwargs()
    first = store.record_trial(**kwargs)
    second = store.record_trial(**kwargs)
    assert first.trial_uid == second.trial_uid
    assert store.info().trials == 1


def test_trials_query_filters(store, trials):
    trials.fill(store, 28)
    everything = store.trials()
    assert len(everything) == 28
    assert store.trials(kernel=GLA_FWD) == [t for t in everything if t.kernel == GLA_FWD]
    assert store.trials(spec_hash=LINEAR_FWD.spec_hash) == [t for t in everything if t.kernel == LINEAR_FWD]
    assert store.trials(device=A100) == [t for t in everything if t.device == A100]
    assert store.trials(device_name=H100.name) == [t for t in everything if t.device == H100]
    assert store.trials(status="timeout") == [t for t in everything if t.status == "timeout"]
    assert store.trials(shape_bucket="bh8_t1024", dtype="bfloat16") == [
        t for t in everything if t.shape_bucket == "bh8_t1024"]


def test_values_come_back_exactly(store, trials):
    recorded = trials.record(store, median_ms=0.1 + 0.2, p20_ms=1 / 3, p80_ms=2 / 3, max_error=float("inf"),
                             seed=2**40, config={"BT": 64, "algo": "chunk", "nested": {"a": [1, 2.5, None]}})
    (stored,) = store.trials()
    assert stored == recorded
    assert stored.median_ms == 0.1 + 0.2 and math.isinf(stored.max_error)
    assert store.variant_specs() == {LINEAR_FWD.spec_hash: LINEAR_SPEC}


@pytest.mark.parametrize("override, message", [
    (dict(status="crashed"), "status: expected one of"),
    (dict(status="ok", median_ms=None), "median_ms: an 'ok' trial needs a finite time"),
    (dict(status="ok", median_ms=float("nan")), "median_ms: an 'ok' trial needs a finite time"),
    (dict(config=[64, 4]), "config: expected a JSON object"),
    (dict(config={"BT": float("nan")}), "config: not representable as JSON"),
    (dict(config={"fn": object()}), "config: not representable as JSON"),
    (dict(n_repeats=-1), "n_repeats: expected an integer >= 0"),
    (dict(seed=1.5), "seed: expected an integer or null"),
    (dict(shape_bucket=""), "shape_bucket: expected a shape bucket"),
    (dict(median_ms="fast"), "median_ms: expected a number"),
])
def test_bad_fields_are_refused_naming_the_field(store, trials, override, message):
    with pytest.raises(RecordError, match=message):
        trials.record(store, **override)
    assert store.info().trials == 0


def test_device_fields_are_checked(store, trials):
    with pytest.raises(RecordError, match="device.sm_count: expected an integer >= 0"):
        trials.record(store, device=dataclasses.replace(H100, sm_count="132"))
    with pytest.raises(RecordError, match="device.name: expected a device name"):
        trials.record(store, device=dataclasses.replace(H100, name=""))
    assert store.info().trials == 0


def test_info_reports_counts_and_version(store, trials):
    trials.fill(store, 14)
    info = store.info()
    assert (info.variants, info.kernels, info.devices, info.trials) == (2, 2, 2, 14)
    assert info.schema_version == info.code_schema_version == 3
    assert info.revision == "0003_alembic_revision_only"
    assert sum(info.trials_by_status.values()) == 14
    assert info.to_dict()["trials"] == 14
    assert "***" in info.url or info.dialect == "sqlite"


def test_reopening_keeps_everything(new_db_url, trials):
    url = new_db_url("reopen")
    with TuningStore(url) as store:
        recorded = trials.fill(store, 10)
    with TuningStore(url) as store:
        assert sorted(store.trials(), key=lambda t: t.trial_uid) == sorted(recorded, key=lambda t: t.trial_uid)
