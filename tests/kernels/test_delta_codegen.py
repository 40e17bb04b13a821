"""Delta- and zeros-family codegen (pure, no kernels run): plans, config checks and renders that parse
(golden renders: tests/codegen/test_golden.py)."""

from __future__ import annotations

import ast
import dataclasses
import itertools

import pytest

from slagen.api import emit
from slagen.codegen import ConfigError, UnsupportedSpec, lower, render
from slagen.codegen.families import delta, family_name, zeros
from slagen.spec import BUILTIN_SPECS

VARIANTS = ("gdn", "sla_gdn", "zeros", "zeros_retnet", "zeros_mamba2", "zeros_gla")


@pytest.mark.parametrize("name", VARIANTS)
def test_plans_and_defaults(name):
    spec = BUILTIN_SPECS[name]
    plans = lower(spec)
    assert set(plans) == {"forward", "recurrent", "backward"}
    assert family_name(spec) == ("delta" if spec.decay == "delta" else "zeros")
    for plan in plans.values():
        plan.default_config()
    fwd = plans["forward"]
    assert max(fwd.axis("chunk_size").choices) <= (64 if spec.decay in ("delta", "vector") else 128)
    if spec.output_norm == "rms":  # the norm needs whole o rows
        assert fwd.axis("block_v").choices == (delta.next_pow2(spec.head_dim_v),)


@pytest.mark.parametrize("name", VARIANTS)
def test_sampled_configs_render_and_parse(name):
    for plan in lower(BUILTIN_SPECS[name]).values():
        configs = list(plan.configs())
        for config in itertools.islice(configs, 0, None, max(1, len(configs) // 8)):
            ast.parse(render(plan, config))


@pytest.mark.parametrize("bad", [{"chunk_size": 128}, {"chunk_size": "32"}, {"block_v": 256}, {"num_warps": 3}],
                         ids=str)
def test_invalid_configs_are_rejected(bad):
    with pytest.raises(ConfigError):
        emit("gdn", "forward", bad)


def test_fixed_chunk_size_outside_the_family_is_refused():
    with pytest.raises(UnsupportedSpec, match="chunk_size"):
        lower(dataclasses.replace(BUILTIN_SPECS["gdn"], chunk_size=128))
    assert lower(dataclasses.replace(BUILTIN_SPECS["zeros"], chunk_size=128))["forward"].axis("chunk_size").choices \
        == (128,)


def test_families_refuse_each_others_specs():
    with pytest.raises(UnsupportedSpec, match="delta family"):
        delta.lower(BUILTIN_SPECS["zeros"])
    with pytest.raises(UnsupportedSpec, match="zeros family"):
        zeros.lower(BUILTIN_SPECS["gdn"])


