"""Gated family (linear, RetNet, Mamba2, GLA and their SLA forms) with fp16 and bf16 inputs: outputs, final states
and every gradient against the float64 reference, both forward algorithms, tolerances from tolerances.py.

fp16 runs the tensor-core path itself under the interpreter (fp16 dot operands); bf16 runs launch.dot_operands'
interpreter form (operands rounded to bf16, multiplied in fp32: the interpreter's bf16 dot is wrong,
triton #11584), so the CPU fallback stays correct for bf16 users.
"""

from __future__ import annotations

import json

import pytest
import torch

from gated_bwd_helpers import assert_grads_close, compiled_bwd, kernel_grads, leaves, reference_grads
from gated_helpers import assert_close, compiled, inputs, reference, small_spec
from slagen.codegen.families.gated import lower
from slagen.codegen.plan import ConfigError
from slagen.runtime import launch
from tolerances import tol

pytestmark = pytest.mark.interpreter
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
FORWARD = {
    "two_pass": dict(chunk_size=16, block_k=16, block_v=16, algorithm="two_pass"),
    "one_pass": dict(chunk_size=32, block_k=32, algorithm="one_pass"),
}
BACKWARD = dict(chunk_size=16, block_k=16, block_v=16)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("algorithm", list(FORWARD))
@pytest.mark.parametrize("name", ["retnet", "sla_mamba2", "sla_gla"])
def test_forward_low_precision(name, algorithm, dtype):
    ker, ref = inputs(name, *((1, 37, 2) if "gla" in name else (2, 50, 3)), seed=41, dtype=DTYPES[dtype])
    o, state = compiled(name, json.dumps(FORWARD[algorithm], sort_keys=True))(**ker, output_final_state=True)
    assert o.dtype == DTYPES[dtype] and state.dtype == torch.float32
    assert_close((o, state), reference(name, ref), tol(DTYPES[dtype]))


@pytest.mark.parametrize("name,dtype,state_dtype", [("retnet", "fp16", "input"), ("retnet", "bf16", "input"),
                                                    ("sla_mamba2", "fp16", "input"), ("sla_mamba2", "bf16", "input"),
                                                    ("sla_mamba2", "bf16", "fp32"), ("gla", "fp16", "input"),
                                                    ("sla_gla", "bf16", "input")])
def test_gradients_low_precision(name, dtype, state_dtype):
    ker, ref = inputs(name, 1, 37, 2, seed=42, dtype=DTYPES[dtype])
    ker, ref = leaves(ker, ref)
    want, do, dht = reference_grads(name, ref)
    config = json.dumps(dict(BACKWARD, state_dtype=state_dtype), sort_keys=True)
    forward = json.dumps(dict(FORWARD["two_pass"], state_dtype=state_dtype), sort_keys=True)
    got = kernel_grads(compiled_bwd(name, config, forward), ker, do, dht)
    for k in ("q", "k", "v"):
        assert got[k].dtype == DTYPES[dtype], k
    assert_grads_close(got, want, tol(DTYPES[dtype]))


def test_dot_operands_follow_the_input_dtype(monkeypatch):
    x = torch.zeros(1, 1, 1, 1)
    assert launch.dot_operands(x) == "fp32"
    assert launch.dot_operands(x.half()) == "fp16"
    # the interpreter's bf16 dot is wrong: fp32 operands holding bf16 values; compiled kernels take bf16
    assert launch.dot_operands(x.bfloat16()) == "bf16_fp32"
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert launch.dot_operands(x.bfloat16()) == "bf16"
    assert launch.flags(x.half())["DOT"] == "fp16"


def test_chunk_states_in_the_input_dtype_by_default():
    x = torch.zeros(1, 1, 1, 1, dtype=torch.bfloat16)
    assert launch.new_chunk_states((2, 3), x, "input").dtype == torch.bfloat16
    assert launch.new_chunk_states((2, 3), x, "fp32").dtype == torch.float32
    plans = lower(small_spec("retnet"))
    for op in ("forward", "backward"):
        assert plans[op].default["state_dtype"] == "input"
        assert plans[op].axis("state_dtype").choices == ("input", "fp32")
    with pytest.raises(ConfigError, match="state_dtype"):
        plans["forward"].validate_config(dict(plans["forward"].default, algorithm="one_pass", block_k=32,
                                              state_dtype="fp32"))


def test_long_sequence_bf16():
    """T = 4096 (64 chunks of 64, chunk states in bf16, the default): outputs, final state and every gradient
    stay at the error of T = 37 (measured: o 4.9e-3, state 2.9e-3, gradients 4e-3..9e-3 relative RMS):
    bf16 states do not accumulate error over the chunks. sla_mamba2: a scalar decay, the head gate and the
    output norm."""
    name, dt = "sla_mamba2", torch.bfloat16
    config = json.dumps(dict(chunk_size=64, block_k=32, block_v=16), sort_keys=True)
    ker, ref = leaves(*inputs(name, 1, 4096, 2, seed=43, dtype=dt))
    want, do, dht = reference_grads(name, ref)
    with torch.no_grad():
        o_ref, state_ref = reference(name, {k: v.detach() for k, v in ref.items()})
        assert_close(compiled(name, config)(**{k: v.detach() for k, v in ker.items()}, output_final_state=True),
                     (o_ref, state_ref), tol(dt))
    assert_grads_close(kernel_grads(compiled_bwd(name, config, config), ker, do, dht), want, tol(dt))
