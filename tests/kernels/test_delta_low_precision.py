"""Gated DeltaNet (gdn, sla_gdn) with fp16 and bf16 inputs: outputs, final states and every gradient against
the float64 reference, chunked and recurrent, and one T = 4096 forward; tolerances from tolerances.py.

Every dot of the delta kernels takes its operands in the input dtype (fp32 accumulation), as fla's do: K K^T,
W = T (beta e^b K), U = T (beta V), W S, the output's (Q e^b) S and P delta, the state update and all the
backward's dots. The triangular inverse T = (I + A)^-1 is formed by forward substitution in fp32 registers (no
dot) and rounded only where it enters W and U. fp16 runs the tensor-core path itself under the interpreter;
bf16 runs launch.dot_operands' interpreter form (operands rounded to bf16, multiplied in fp32: the
interpreter's bf16 dot is wrong, triton #11584).
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
import triton
import triton.language as tl

import slagen
from slagen.codegen import lower, render
from slagen.runtime.loader import load_source
from delta_bwd_helpers import leaf_names, reference_grads, rel_rms
from gated_bwd_helpers import Launches
from slagen.reference import attention, make_inputs
from slagen.spec import BUILTIN_SPECS
from tolerances import tol

pytestmark = pytest.mark.interpreter
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@functools.lru_cache(maxsize=None)
def spec_of(name):
    return dataclasses.replace(BUILTIN_SPECS[name], head_dim_k=32, head_dim_v=16)


@functools.lru_cache(maxsize=None)
def compiled(name, epilogue_input=None):
    """`epilogue_input` None: the default (sla_gdn: "saved", the forward keeps o before the epilogue)."""
    config = {"chunk_size": 16, "block_v": 16}
    backward = config if epilogue_input is None else {**config, "epilogue_input": epilogue_input}
    return slagen.compile(spec_of(name), config, recurrent_config={"block_v": 16}, backward_config=backward)


def kernel_inputs(inp: dict, dtype: torch.dtype) -> dict:
    """q, k, v in `dtype` (what users run), the gates and the initial state in fp32; float leaves need grad."""
    def convert(name, x):
        if not x.is_floating_point():
            return x
        x = x.detach().to(dtype if name in ("q", "k", "v") else torch.float32)
        return x.requires_grad_(name in leaf_names(inp))
    return {name: convert(name, x) for name, x in inp.items()}


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name, epilogue_input", [("gdn", None), ("sla_gdn", "saved"), ("sla_gdn", "recompute")])
def test_low_precision_matches_reference(name, epilogue_input, dtype):
    """sla_gdn's epilogue backward on the o_raw its forward kept (in the input dtype) or on o recomputed."""
    spec, dt = spec_of(name), DTYPES[dtype]
    inp = make_inputs(spec, 1, 37, 2, seed=7, with_initial_state=True)
    want, do, dht = reference_grads(spec, inp)
    o_ref, state_ref = attention(spec, **inp, output_final_state=True, method="naive")
    ker = kernel_inputs(inp, dt)
    op = compiled(name, epilogue_input)
    assert op.saves_output == (epilogue_input == "saved")
    o, state = op(**ker, output_final_state=True)
    assert o.dtype == dt and state.dtype == torch.float32
    errors = {"o": rel_rms(o, o_ref), "final_state": rel_rms(state, state_ref)}
    ((o.double() * do).sum() + (state.double() * dht).sum()).backward()
    for n, w in want.items():
        assert ker[n].grad is not None, f"{n}: no gradient"
        assert ker[n].grad.dtype == ker[n].dtype, n
        errors[f"d{n}"] = rel_rms(ker[n].grad, w)
    bad = {n: f"{e:.2e}" for n, e in errors.items() if not e < tol(dt)}
    assert not bad, f"relative RMS over {tol(dt):g}: {bad}"


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_low_precision_recurrent(dtype):
    spec, dt = spec_of("sla_gdn"), DTYPES[dtype]
    inp = make_inputs(spec, 1, 13, 2, seed=3, with_initial_state=True)
    o_ref, state_ref = attention(spec, **inp, output_final_state=True, method="naive")
    with torch.no_grad():
        o, state = compiled("sla_gdn").recurrent(**kernel_inputs(inp, dt), output_final_state=True)
    assert o.dtype == dt
    assert rel_rms(o, o_ref) < tol(dt) and rel_rms(state, state_ref) < tol(dt)


def dot_operand(b_x, DOT):  # replaced by a rendered module's jit function (interpreter only)
    raise NotImplementedError


@triton.jit
def operand_kernel(x, y, N: tl.constexpr, DOT: tl.constexpr):
    o = tl.arange(0, N)
    tl.store(y + o, dot_operand(tl.load(x + o), DOT))


def test_interpreter_bf16_operands_round_to_nearest(monkeypatch):
    """Under the interpreter bf16 dot operands are fp32 values rounded to bf16 as the GPU rounds them (to
    nearest even): the interpreter's own fp32 -> bf16 cast truncates, which halves no error but biases every
    operand toward zero (about twice the bf16 error of a GPU on the delta rule)."""
    plan = lower(spec_of("gdn"))["forward"]
    module = load_source(render(plan, plan.default_config()))
    monkeypatch.setitem(globals(), "dot_operand", module.dot_operand)
    x = torch.randn(1024, generator=torch.Generator().manual_seed(0)) * 10
    y = torch.empty_like(x)
    operand_kernel[(1,)](x, y, N=1024, DOT="bf16_fp32")
    torch.testing.assert_close(y, x.to(torch.bfloat16).float(), rtol=0, atol=0)


@pytest.mark.parametrize("state_dtype", ["input", "fp32"])
def test_chunk_states_dtype(state_dtype):
    """The parallel forward's chunk states h (handed from the recurrence to the output pass) in bf16 or fp32."""
    spec, dt = spec_of("gdn"), torch.bfloat16
    inp = make_inputs(spec, 1, 37, 2, seed=8, with_initial_state=True)
    o_ref, state_ref = attention(spec, **inp, output_final_state=True, method="naive")
    op = slagen.compile(spec, {"chunk_size": 16, "block_v": 16, "state_dtype": state_dtype})
    with torch.no_grad():
        o, state = op(**kernel_inputs(inp, dt), output_final_state=True)
    assert rel_rms(o, o_ref) < tol(dt) and rel_rms(state, state_ref) < tol(dt)


def test_long_sequence_bf16():
    """T = 4096 (64 chunks of 64): bf16 operands and chunk states do not accumulate error over the chunks
    (measured: o 1.0e-2, final state 5e-3 relative RMS, as at T = 37)."""
    spec, dt = spec_of("gdn"), torch.bfloat16
    inp = make_inputs(spec, 1, 4096, 1, seed=9, with_initial_state=True)
    o_ref, state_ref = attention(spec, **inp, output_final_state=True)
    op = slagen.compile(spec, {"chunk_size": 64, "block_v": 16})
    with torch.no_grad():
        o, state = op(**kernel_inputs(inp, dt), output_final_state=True)
    assert rel_rms(o, o_ref) < tol(dt) and rel_rms(state, state_ref) < tol(dt)


def test_bf16_forward_hands_fp32_states_in_one_walk(monkeypatch):
    """Asked for its states at its own chunking (a "store" backward), the bf16 parallel forward returns the
    recurrence's states in fp32 and walks the sequence once (no states-only launch of the one-pass kernel)."""
    spec = spec_of("gdn")
    inp = kernel_inputs(make_inputs(spec, 1, 37, 2, seed=10, with_initial_state=True), torch.bfloat16)
    op = slagen.compile(spec, {"chunk_size": 16, "block_v": 16})
    names = op.forward_fn.__globals__
    walks = Launches(names["delta_chunk_forward"])
    monkeypatch.setitem(names, "delta_chunk_forward", walks)
    with torch.no_grad():
        o, _, h = op.forward_fn(**inp, scale=0.5, output_final_state=True, save_states_chunk=16)
        o_plain, _ = op.forward_fn(**inp, scale=0.5, output_final_state=True)
    assert h.dtype == torch.float32 and h.shape == (3, 2, 32, 16) and walks.count == 0
    torch.testing.assert_close(h[0], inp["initial_state"][0], rtol=0, atol=0)
    assert rel_rms(o, o_plain.float()) < tol(torch.bfloat16)
