"""The one escaping path into generated code (`literal`), the module's SPEC / CONFIG block, the launch helper
that splats them into each kernel (`launch.meta`), and the one place templates are found."""

import ast
import math

import pytest
import triton
import triton.language as tl

from slagen.codegen import lower
from slagen.codegen.render import constants_block, literal, templates_dir
from slagen.runtime import launch
from slagen.spec import BUILTIN_SPECS


@pytest.mark.parametrize("value", [0, -3, 1e-06, 2.5, True, False, None, "two_pass", ("q", "k"), ("v",), ()])
def test_literal_round_trips(value):
    assert ast.literal_eval(literal(value)) == value


@pytest.mark.parametrize("value", ["a b", "x'); import os; ('", "", "1abc", math.inf, math.nan, 1j, [1], {"a": 1},
                                   b"q", ("ok", "not ok")])
def test_literal_refuses_anything_else(value):
    with pytest.raises(ValueError, match="^literal: expected"):
        literal(value)


def test_constants_block_holds_spec_and_config():
    plan = lower(BUILTIN_SPECS["sla_gla"])["backward"]
    config = plan.default_config()
    names = {}
    exec(constants_block(plan, config), {}, names)
    assert names["SPEC"] == {k: v for k, v in plan.constants.items() if k != "GRADS"}
    assert names["GRADS"] == plan.constants["GRADS"]
    assert names["CONFIG"] == {"BT": config["chunk_size"], "BK": config["block_k"], "BV": config["block_v"],
                               "num_warps": config["num_warps"], "num_stages": config["num_stages"],
                               "states": config["states"], "state_dtype": config["state_dtype"]}


@triton.jit
def _toy(x, N: tl.constexpr, USE_A: tl.constexpr):
    pass


class _Counter:
    def __init__(self, kernel):
        self.kernel = kernel


def test_meta_takes_what_the_kernel_declares():
    spec, config = dict(N=4, USE_A=True, OTHER=1.0), dict(num_warps=8, num_stages=2, states="store")
    assert launch.meta(_toy, spec, config) == dict(N=4, USE_A=True, num_warps=8, num_stages=2,
                                                   enable_fp_fusion=True)
    assert launch.meta(_Counter(_toy), spec, config, N=16)["N"] == 16  # stand-ins hold the kernel as .kernel
    with pytest.raises(TypeError, match="no parameter 'M'"):
        launch.meta(_toy, spec, M=1)


def test_templates_are_the_package_data():
    names = {p.name for p in templates_dir().iterdir()}
    plans = [plan for spec in BUILTIN_SPECS.values() for plan in lower(spec).values()]
    assert {plan.template for plan in plans} <= names
    assert {"package_init.py.jinja", "package_layers.py.jinja"} <= names
