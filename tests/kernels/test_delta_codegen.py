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




@pytest.mark.parametrize("name", ["gdn", "sla_gdn"])
def test_delta_dots_take_the_input_dtype(name):
    """Every dot of the chunked delta kernels goes through mma(..., DOT) (operands in the input dtype for
    fp16/bf16 inputs, launch.dot_operands), none through a bare fp32 tl.dot; but for merge_dot, the parallel
    forward's triangular-inverse merges, kept IEEE fp32 on purpose (tests/kernels/test_delta_inverse.py)."""
    for op in ("forward", "backward"):
        plan = lower(BUILTIN_SPECS[name])[op]
        tree = ast.parse(render(plan, plan.default_config()))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        assert not [c for c in calls if ast.unparse(c.func) == "tl.dot" and not _inside_mma(tree, c)], op
        assert sum(ast.unparse(c.func) == "mma" for c in calls) >= 7, op
        kernels = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name != "mma"
                   and any(isinstance(n, ast.Call) and ast.unparse(n.func) == "mma" for n in ast.walk(f))]
        for f in kernels:
            assert "DOT" in [a.arg for a in f.args.args], (op, f.name)


def _inside_mma(tree, call):
    wrappers = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name in ("mma", "merge_dot")]
    return any(n is call for f in wrappers for n in ast.walk(f))


def test_delta_forward_algorithms():
    """The delta forward's `algorithm` axis: parallel (default; prepare / recurrence / output kernels) or
    one_pass (today's single kernel); `state_dtype` is the parallel form's, one_pass refuses fp32."""
    plan = lower(BUILTIN_SPECS["gdn"])["forward"]
    assert plan.default["algorithm"] == "parallel" and plan.default["state_dtype"] == "input"
    assert plan.axis("algorithm").choices == ("parallel", "one_pass")
    assert plan.axis("state_dtype").choices == ("input", "fp32")
    with pytest.raises(ConfigError, match="state_dtype"):
        plan.validate_config(dict(plan.default, algorithm="one_pass", state_dtype="fp32"))
    kernels = {"delta_chunk_prepare", "delta_chunk_recurrence", "delta_chunk_output"}
    for algorithm in ("parallel", "one_pass"):
        tree = ast.parse(render(plan, plan.validate_config({"algorithm": algorithm}, partial=True)))
        launched = {ast.unparse(n.value) for n in ast.walk(tree) if isinstance(n, ast.Subscript)
                    and isinstance(n.ctx, ast.Load) and ast.unparse(n.value).startswith("delta_chunk_")}
        assert launched == (kernels | {"delta_chunk_forward"} if algorithm == "parallel"
                            else {"delta_chunk_forward"}), algorithm
    # ZeroS reuses the delta plans with its own algorithms (its state pass + a parallel output pass)
    assert lower(BUILTIN_SPECS["zeros"])["forward"].axis("algorithm").choices == ("two_pass", "one_pass")
