"""The real measure path: statuses, the verification against the reference, timing; and an end-to-end
tune under the Triton interpreter on a tiny shape."""

from __future__ import annotations

import dataclasses
import functools
import math

import pytest

from slagen.spec import ProblemShape, load_spec
from slagen.tuning import Measurement, MeasureSettings, TrialContext, measure_op
from slagen.tuning.fingerprint import interpreter_fingerprint
from slagen.tuning.measure import classify_failure, summary

FAST = MeasureSettings(cpu_repeats=1, rep_ms=0.0, verify_seqlen=40)
TINY = ProblemShape(1, 40, 2)


def test_quantile_and_measurement_rules():
    assert summary([3.0, 1.0, 2.0]) == dict(median_ms=2.0, p20_ms=pytest.approx(1.4), p80_ms=pytest.approx(2.6),
                                            n_repeats=3)
    assert summary([1.0, 2.0, 3.0, 4.0, 5.0])["p20_ms"] == pytest.approx(1.8)  # numpy's (and do_bench's) rule
    assert summary([4.0]) == dict(median_ms=4.0, p20_ms=4.0, p80_ms=4.0, n_repeats=1)
    assert Measurement("compile_error").objective == math.inf
    with pytest.raises(ValueError):
        Measurement("ok")  # ok needs a time
    with pytest.raises(ValueError):
        Measurement("crashed")


def test_gpu_timing_is_tritons_do_bench(monkeypatch):
    """On a GPU the runs are timed by triton.testing.do_bench (its repeat count, its L2 flush), with the
    settings' warm-up and repetition times; no GPU here, so do_bench is observed, not run."""
    import triton.testing

    from slagen.tuning.measure import time_calls

    seen = []
    monkeypatch.setattr(triton.testing, "do_bench", lambda fn, **kw: seen.append(kw) or [2.0, 1.0, 3.0])
    assert time_calls(lambda: None, MeasureSettings(warmup_ms=7.0, rep_ms=50.0), cuda=True) == [2.0, 1.0, 3.0]
    assert seen == [dict(warmup=7.0, rep=50.0, return_mode="all")]


def test_failures_are_classified():
    from triton.compiler.errors import CompilationError
    from triton.runtime.errors import OutOfResources

    assert classify_failure(OutOfResources(300000, 232448, "shared memory")) == "out_of_resources"
    assert classify_failure(CompilationError("k.py", None, "bad")) == "compile_error"
    assert classify_failure(RuntimeError("ptxas: too many resources requested for launch")) == "out_of_resources"
    assert classify_failure(TypeError("unexpected keyword")) == "compile_error"


def _tiny_spec():
    from slagen.codegen import lower

    spec = dataclasses.replace(load_spec("retnet"), head_dim_k=16, head_dim_v=16, dtypes=("float32",))
    return spec, lower(spec)


@pytest.fixture
def interpreter(monkeypatch, tmp_path):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("SLAGEN_CACHE_DIR", str(tmp_path / "cache"))
    return interpreter_fingerprint()


def _ctx(spec, plan, device, **kwargs):
    return TrialContext(spec, plan, plan.default_config(), TINY, "float32", device, **kwargs)


@pytest.mark.interpreter
def test_measure_op_verifies_then_times_each_op(interpreter):
    spec, plans = _tiny_spec()
    for plan in plans.values():
        m = measure_op(_ctx(spec, plan, interpreter), FAST)
        assert m.status == "ok", m.message
        assert m.max_error < 1e-4 and m.median_ms > 0 and m.p20_ms <= m.median_ms <= m.p80_ms


@pytest.mark.interpreter
def test_measure_op_reports_mismatch_timeout_and_build_failures(interpreter, monkeypatch):
    spec, plans = _tiny_spec()
    plan = plans["forward"]
    strict = dataclasses.replace(FAST, tolerance={"float32": 0.0})
    mismatch = measure_op(_ctx(spec, plan, interpreter), strict)
    assert mismatch.status == "mismatch" and mismatch.max_error > 0 and mismatch.median_ms is None
    assert measure_op(_ctx(spec, plan, interpreter, time_limit_s=1e-9), FAST).status == "timeout"

    from triton.runtime.errors import OutOfResources

    import slagen.jit

    def no_room(*args, **kwargs):
        raise OutOfResources(300000, 232448, "shared memory")

    monkeypatch.setattr(slagen.jit, "compile_op", no_room)
    assert measure_op(_ctx(spec, plan, interpreter), FAST).status == "out_of_resources"
    monkeypatch.setattr(slagen.jit, "compile_op", lambda *a, **k: (_ for _ in ()).throw(SyntaxError("bad source")))
    failed = measure_op(_ctx(spec, plan, interpreter), FAST)
    assert failed.status == "compile_error" and "bad source" in failed.message


@pytest.mark.interpreter
def test_end_to_end_tune_under_the_interpreter(interpreter, store):
    from slagen.tuning import tune

    spec, plans = _tiny_spec()
    report = tune(spec, [TINY], store=store, device=interpreter, budget_trials=2, seed=0,
                  measure=functools.partial(measure_op, settings=FAST))
    assert {s.op for s in report.searches} == set(plans)
    for search in report.searches:
        assert search.trials_by_status == {"ok": 2} and search.best_ms > 0
        plans[search.op].validate_config(search.best_config)
    assert len(store.trials()) == 2 * len(plans)
    assert all(t.device.name == "cpu-interpreter" and t.status == "ok" for t in store.trials())
