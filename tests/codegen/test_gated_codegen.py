"""Gated-family codegen: plans, config validation (nothing unchecked reaches a template),
and renders of every config that parse as Python (golden renders: tests/codegen/test_golden.py).
"""

from __future__ import annotations

import ast
import dataclasses
import itertools

import pytest

from slagen.api import emit
from slagen.codegen import ConfigError, UnsupportedSpec, lower, render
from slagen.codegen.families import gated
from slagen.spec import BUILTIN_SPECS

VARIANTS = ("linear", "retnet", "mamba2", "gla", "sla_linear", "sla_retnet", "sla_mamba2", "sla_gla")


@pytest.mark.parametrize("name", VARIANTS)
def test_plans_and_defaults(name):
    spec = BUILTIN_SPECS[name]
    plans = lower(spec)
    assert set(plans) == {"forward", "recurrent", "backward"}
    for plan in plans.values():
        plan.default_config()  # the heuristic default is valid
        assert any(True for _ in plan.configs())
    fwd = plans["forward"]
    assert fwd.axis("algorithm").choices == ("two_pass", "one_pass")
    if spec.output_norm == "rms":  # the norm needs whole o rows
        assert fwd.axis("block_v").choices == (gated.next_pow2(spec.head_dim_v),)


def test_one_pass_rule_prunes_block_k():
    plan = lower(BUILTIN_SPECS["mamba2"])["forward"]
    with pytest.raises(ConfigError, match="block_k"):
        plan.validate_config({"algorithm": "one_pass", "block_k": 32}, partial=True)
    assert all(c["block_k"] == 128 for c in plan.configs() if c["algorithm"] == "one_pass")


@pytest.mark.parametrize("name", VARIANTS)
def test_sampled_configs_render_and_parse(name):
    for plan in lower(BUILTIN_SPECS[name]).values():
        configs = list(plan.configs())
        for config in itertools.islice(configs, 0, None, max(1, len(configs) // 12)):
            ast.parse(render(plan, config))


BAD = [
    {"chunk_size": "64"},
    {"chunk_size": "64); import os"},
    {"chunk_size": True},
    {"chunk_size": 48},
    {"chunk_size": 64.0},
    {"block_v": 4096},
    {"num_warps": -4},
    {"algorithm": "three_pass"},
    {"algorithm": "two_pass\nimport os"},
    {"unroll": 2},
]


@pytest.mark.parametrize("bad", BAD, ids=[str(b) for b in BAD])
def test_invalid_configs_are_rejected_before_rendering(bad):
    plan = lower(BUILTIN_SPECS["mamba2"])["forward"]
    with pytest.raises(ConfigError):
        render(plan, {**plan.default, **bad})
    with pytest.raises(ConfigError):
        emit("mamba2", "forward", bad)


def test_unsupported_specs_name_the_missing_piece():
    with pytest.raises(UnsupportedSpec, match="gated family"):
        gated.lower(BUILTIN_SPECS["zeros"])




@pytest.mark.parametrize("name,chunk", [("gla", 256), ("gla", 128), ("retnet", 256)])
def test_unsupported_fixed_chunk_size_is_refused(name, chunk):
    spec = dataclasses.replace(BUILTIN_SPECS[name], chunk_size=chunk)
    with pytest.raises(UnsupportedSpec, match=rf"^chunk_size: {chunk} is not generated"):
        lower(spec)
