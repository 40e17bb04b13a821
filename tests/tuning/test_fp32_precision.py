"""fp32 inputs' dot precision (SLAGEN_FP32_PRECISION, docs/conventions.md): TF32 by default, three TF32
products or IEEE fp32 on request. The setting reaches the kernels as the constexpr DOT and, compiled for sm_90
(`slagen.tuning.aot`, no GPU), shows in the machine code: TF32 MMAs, three times as many, or none (fp32 FMAs)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from slagen.codegen import lower, render
from slagen.runtime import launch
from slagen.spec import BUILTIN_SPECS
from slagen.tuning import aot
from slagen.tuning.sass import SassMix

SPEC = dataclasses.replace(BUILTIN_SPECS["retnet"], head_dim_k=64, head_dim_v=64)
DOT = {None: "fp32", "tf32": "fp32", "tf32x3": "fp32_tf32x3", "ieee": "fp32_ieee"}


def _set(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("SLAGEN_FP32_PRECISION", raising=False)
    else:
        monkeypatch.setenv("SLAGEN_FP32_PRECISION", value)


@pytest.mark.parametrize("value", list(DOT))
def test_the_setting_picks_the_dot_constexpr(monkeypatch, value):
    _set(monkeypatch, value)
    x = torch.zeros(1, 1, 1, 1)
    assert launch.dot_operands(x) == DOT[value]
    # low-precision inputs are unaffected
    assert launch.dot_operands(x.half()) == "fp16"


def test_a_bad_setting_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("SLAGEN_FP32_PRECISION", "fp64")
    with pytest.raises(ValueError, match=r"SLAGEN_FP32_PRECISION: expected one of tf32, tf32x3, ieee, got 'fp64'"):
        launch.dot_operands(torch.zeros(1, 1, 1, 1))


def _states_job(monkeypatch, value) -> aot.Job:
    _set(monkeypatch, value)
    plan = lower(SPEC)["forward"]
    source = render(plan, plan.validate_config({"block_k": 64, "block_v": 64}, partial=True))
    inputs = aot.case_inputs(SPEC, "fixed", torch.float32)
    jobs = aot.jobs_for(source, aot.op_calls(SPEC, "forward", inputs, SPEC.head_dim_k ** -0.5))
    (job,) = [j for j in jobs if j.kernel == "chunk_states"]
    assert job.constexprs["DOT"] == DOT[value]
    return job


def test_the_setting_reaches_the_tensor_cores_on_sm90(monkeypatch):
    values = ("tf32", "tf32x3", "ieee")
    results = aot.compile_jobs([_states_job(monkeypatch, v) for v in values], 90)
    assert all(r.ok for r in results), [r.error for r in results]
    tf32, tf32x3, ieee = (SassMix(**r.sass) for r in results)
    assert tf32.mma_types == tf32x3.mma_types == ["TF32"], (tf32, tf32x3)
    # (three products per dot at least; the static count also depends on how the compiler lays them out)
    assert sum(tf32x3.mma.values()) >= 3 * sum(tf32.mma.values()), (tf32.mma, tf32x3.mma)
    assert ieee.mma == {} and ieee.ffma > 0, ieee
