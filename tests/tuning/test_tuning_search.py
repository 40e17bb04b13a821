"""Search strategies and the tuner loop with a deterministic synthetic cost model."""

from __future__ import annotations

import json
import math
import time

import pytest

from slagen.tuning import H100_SXM, SyntheticCost, build_space, tune
from slagen.tuning.search import SearchError

from tuning_helpers import OPTIMUM, SHAPE, SPEC, toy_plan


def _tune(store, plan, measure, **kwargs):
    return tune(SPEC, [SHAPE], store=store, device=H100_SXM, plans={"forward": plan}, measure=measure, **kwargs)


class Spy:
    """Wraps a measure function and remembers every config it was asked to measure."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def __call__(self, ctx):
        self.seen.append(ctx.config.to_json())
        return self.inner(ctx)


def test_grid_measures_every_feasible_config_once_and_finds_the_optimum(store, plan):
    spy = Spy(SyntheticCost(OPTIMUM))
    report = _tune(store, plan, spy, sampler="grid")
    (search,) = report.searches
    assert len(spy.seen) == len(set(spy.seen)) == plan.space_size() == 24
    assert search.best_config == OPTIMUM and search.best_ms == pytest.approx(1.0)
    assert search.trials_by_status == {"ok": 24} and search.stopped == "exhausted"
    assert json.loads(spy.seen[0]) == dict(plan.default)  # the heuristic default goes first
    assert len(store.trials()) == 24
    best = store.best_config(store.trials()[0].kernel, device=H100_SXM,
                             shape_bucket=search.shape_bucket, dtype="bfloat16")
    assert best.config == OPTIMUM


def test_tpe_finds_the_optimum_within_budget(store, plan):
    spy = Spy(SyntheticCost(OPTIMUM))
    report = _tune(store, plan, spy, sampler="tpe", budget_trials=16, seed=3)
    assert len(spy.seen) == 16 and len(set(spy.seen)) == 16
    assert report.searches[0].best_config == OPTIMUM
    assert json.loads(spy.seen[0]) == dict(plan.default)


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "grid"])
def test_budget_in_trials_is_respected_and_searches_are_deterministic(tmp_path, plan, sampler):
    from slagen.db import TuningStore

    if sampler == "cmaes":
        pytest.importorskip("cmaes")
    runs = []
    for i in range(2):
        spy = Spy(SyntheticCost(OPTIMUM))
        with TuningStore(f"sqlite:///{tmp_path / f'{i}.db'}") as store:
            report = _tune(store, plan, spy, sampler=sampler, budget_trials=7, seed=11)
            assert len(store.trials()) == 7
        assert len(spy.seen) == 7 and report.searches[0].stopped == "trials"
        runs.append(spy.seen)
    assert runs[0] == runs[1]


def test_budget_in_seconds_is_respected(store, plan):
    spy = Spy(SyntheticCost(OPTIMUM, sleep_s=0.05))
    started = time.monotonic()
    report = _tune(store, plan, spy, budget_seconds=0.4)
    elapsed = time.monotonic() - started
    assert 2 <= len(spy.seen) < 24
    assert report.searches[0].stopped == "seconds"
    assert elapsed < 0.4 + 0.05 + 1.5  # one trial may finish past the deadline; setup is not free


def test_failures_of_each_kind_are_recorded_and_mismatch_never_wins(store, plan):
    optimum = toy_plan().validate_config(OPTIMUM).to_json()
    fails = {optimum: "mismatch"}
    cfgs = [c.to_json() for c in build_space(plan, H100_SXM, "bfloat16").configs if c.to_json() != optimum]
    for status, cfg in zip(["compile_error", "out_of_resources", "timeout"], cfgs):
        fails[cfg] = status
    events = []
    report = _tune(store, plan, SyntheticCost(OPTIMUM, failures=fails), sampler="grid", listener=events.append)
    (search,) = report.searches
    assert search.trials_by_status == {"ok": 20, "compile_error": 1, "out_of_resources": 1, "timeout": 1,
                                       "mismatch": 1}
    by_status = {}
    for trial in store.trials():
        by_status.setdefault(trial.status, []).append(json.dumps(trial.config, sort_keys=True, separators=(",", ":")))
    assert by_status["mismatch"] == [optimum]
    assert {k: len(v) for k, v in by_status.items()} == search.trials_by_status
    assert search.best_config != OPTIMUM and search.best_ms > 1.0
    best = store.best_config(store.trials()[0].kernel, device=H100_SXM,
                             shape_bucket=search.shape_bucket, dtype="bfloat16")
    assert best.config == search.best_config and best.trial.status == "ok"
    # the listener saw running totals: trials done / planned, best so far, failures by kind
    last_trial = [e for e in events if e.kind == "trial"][-1]
    assert (last_trial.done, last_trial.total) == (24, 24)
    assert last_trial.failures == {"compile_error": 1, "out_of_resources": 1, "timeout": 1, "mismatch": 1}
    assert last_trial.best_ms == search.best_ms
    assert events[0].kind == "start" and events[-1].kind == "done"


def test_recorded_configs_are_reused_not_remeasured(store, plan):
    first = Spy(SyntheticCost(OPTIMUM))
    _tune(store, plan, first, budget_trials=10, seed=1)
    second = Spy(SyntheticCost(OPTIMUM))
    events = []
    report = _tune(store, plan, second, sampler="grid", listener=events.append)
    assert not set(first.seen) & set(second.seen)
    assert len(first.seen) + len(second.seen) == 24 == len(store.trials())
    assert report.searches[0].best_config == OPTIMUM
    # a third run has nothing left to measure
    third = Spy(SyntheticCost(OPTIMUM))
    report = _tune(store, plan, third, sampler="tpe", budget_trials=5)
    assert third.seen == [] and report.searches[0].stopped == "exhausted"


def test_a_crash_loses_no_recorded_trial(store, plan):
    calls = []

    def crashing(ctx):
        calls.append(ctx)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return SyntheticCost(OPTIMUM)(ctx)

    with pytest.raises(KeyboardInterrupt):
        _tune(store, plan, crashing, sampler="grid")
    assert len(store.trials()) == 3


def test_invalid_configs_in_the_db_are_rejected_before_any_rendering(store, plan, monkeypatch):
    from slagen import codegen

    _tune(store, plan, SyntheticCost(OPTIMUM), budget_trials=1)
    good = store.trials()[0]
    poisoned = [{"chunk_size": "64"}, {"algo": "no_such_algo"}, {"chunk_size": 4096},
                {"num_warps": True}, {"chunk_size": 32.0}, {"evil": 1}]
    from slagen.db.errors import RecordError

    with pytest.raises(RecordError, match="config.algo"):  # text that is not a plain word never enters the store
        store.record_trial(good.kernel, spec=json.loads(SPEC.canonical_json()), device=good.device,
                           shape_bucket=good.shape_bucket, dtype=good.dtype, status="ok", median_ms=0.001,
                           config=dict(plan.default, algo="scan'); import os; os.system('id"))
    for bad in poisoned:
        config = dict(plan.default, **bad)
        store.record_trial(good.kernel, spec=json.loads(SPEC.canonical_json()), device=good.device,
                           shape_bucket=good.shape_bucket, dtype=good.dtype, config=config, status="ok", median_ms=0.001)
    rendered = []
    monkeypatch.setattr(codegen, "render", lambda plan, config=None: rendered.append(config))
    spy = Spy(SyntheticCost(OPTIMUM))
    events = []
    report = _tune(store, plan, spy, sampler="grid", listener=events.append)
    legal = {c.to_json() for c in build_space(plan, H100_SXM, "bfloat16").configs}
    assert set(spy.seen) <= legal and not rendered
    assert report.searches[0].rejected == len(poisoned)
    assert len([e for e in events if e.kind == "rejected"]) == len(poisoned)
    assert report.searches[0].best_config == OPTIMUM  # a poisoned 0.001 ms "best" never wins the report


def test_each_op_bucket_and_dtype_is_its_own_search(store):
    from slagen.spec import ProblemShape

    plans = {"forward": toy_plan("forward"), "recurrent": toy_plan("recurrent")}
    shapes = [ProblemShape(1, 100, 2), ProblemShape(1, 120, 2), ProblemShape(4, 4096, 16)]
    report = tune(SPEC, shapes, store=store, device=H100_SXM, plans=plans, measure=SyntheticCost(OPTIMUM),
                  budget_trials=2, dtypes=("bfloat16", "float16"))
    keys = {(s.op, s.shape_bucket, s.dtype) for s in report.searches}
    assert len(keys) == len(report.searches) == 2 * 2 * 2
    assert report.trials_by_status == {"ok": 16} and len(store.trials()) == 16


def test_bad_settings_are_refused(store, plan):
    for kwargs in ({"sampler": "bayes"}, {"budget_trials": 0}, {"budget_seconds": -1}, {"workers": 0}):
        with pytest.raises(SearchError):
            _tune(store, plan, SyntheticCost(OPTIMUM), **kwargs)


def test_all_failures_report_no_best(store, plan):
    space = build_space(plan, H100_SXM, "bfloat16")
    fails = {c.to_json(): "compile_error" for c in space.configs}
    report = _tune(store, plan, SyntheticCost(OPTIMUM, failures=fails), budget_trials=5)
    assert report.searches[0].best_config is None and report.searches[0].best_ms is None
    assert report.trials_by_status == {"compile_error": 5}
    assert math.isfinite(report.elapsed_s)


def test_claims_and_the_budget_are_read_from_the_study(plan):
    """What keeps workers of one run apart, on one study: a config another trial of the run has claimed is
    not measured again, a value the study holds is reused, and the run's claims are its trial budget."""
    import optuna

    from slagen.tuning.search import Search

    space = build_space(plan, H100_SXM, "bfloat16")
    a, b, c = space.configs[:3]
    storage = optuna.storages.InMemoryStorage()
    first = Search(space, study_name="s", storage=storage, run_id="run1")
    other = Search(space, study_name="s", storage=storage, run_id="run1")  # another worker of the run
    stranger = Search(space, study_name="s", storage=storage, run_id="run2")  # another run

    def asked(search, config):
        trial = search.study.ask()
        trial.set_user_attr("config", config.to_json())
        return trial

    known: dict = {}
    held = asked(first, a)
    assert first._claim(held, a, known, budget_trials=2) == "claimed"
    assert other._claim(asked(other, a), a, known, budget_trials=2) == "taken"
    assert stranger._claim(asked(stranger, a), a, known, budget_trials=5) == "claimed"  # runs do not coordinate
    held.set_user_attr("measured", True)
    first.study.tell(held, 1.5)
    assert other._claim(asked(other, a), a, known, budget_trials=2) == "known" and known == {a: 1.5}
    assert other._claim(asked(other, b), b, known, budget_trials=2) == "claimed"
    assert other._claim(asked(other, c), c, known, budget_trials=2) == "budget"  # two claims: a and b
