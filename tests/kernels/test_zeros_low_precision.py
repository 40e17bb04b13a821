"""ZeroS with fp16 and bf16 q, k, v (logits, gates and states fp32, as callers keep them): outputs, final states
and every gradient against the float64 reference on the exact draw, tolerances from tolerances.py; logits with
a large common offset, which the first-order products cancel (centred operands, zeros_common.py.jinja).

fp16 runs the tensor-core operand path itself under the interpreter; bf16 runs launch.dot_operands' interpreter
form (operands rounded to bf16, multiplied in fp32: the interpreter's bf16 dot is wrong, triton #11584).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import slagen
from delta_bwd_helpers import assert_grads_close, reference_grads, rel_rms
from slagen.codegen import lower, render
from slagen.reference import attention, make_inputs
from slagen.runtime import launch
from slagen.runtime.loader import load_source
from torch.utils._python_dispatch import TorchDispatchMode
from slagen.spec import BUILTIN_SPECS
from tolerances import tol

pytestmark = pytest.mark.interpreter
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
SMALL = dict(head_dim_k=32, head_dim_v=16)
SPECS = {name: dataclasses.replace(BUILTIN_SPECS[name], **SMALL) for name in ("zeros", "zeros_mamba2")}


def draw(name, dtype, B=2, T=37, H=2, seed=3, offset=0.0, initial=True):
    """(kernel inputs: q, k, v in `dtype`, the rest fp32; float64 reference inputs) from one draw."""
    ref = make_inputs(SPECS[name], B, T, H, seed=seed, with_initial_state=initial)
    ref["zs_logits"] = ref["zs_logits"] + offset
    ker = {}
    for key, x in ref.items():
        if key == "initial_state":
            ker[key] = tuple(p.float() for p in x)
        elif x.is_floating_point():
            ker[key] = x.to(dtype if key in ("q", "k", "v") else torch.float32)
        else:
            ker[key] = x
    return ker, ref


def forward_module(name):
    plan = lower(SPECS[name])["forward"]
    return load_source(render(plan, plan.validate_config({"chunk_size": 16, "block_v": 16}, partial=True)))


def forward_errors(module, name, ker, ref):
    o, (kv, stats) = module.forward(**ker, scale=1.0, output_final_state=True)
    assert o.dtype == ker["q"].dtype and kv.dtype == torch.float32 and stats.dtype == torch.float32
    ro, (rkv, rstats) = attention(SPECS[name], **ref, output_final_state=True, method="naive")
    return {"o": rel_rms(o, ro), "kv": rel_rms(kv, rkv), "stats": rel_rms(stats, rstats)}


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", sorted(SPECS))
def test_forward_low_precision(name, dtype):
    ker, ref = draw(name, DTYPES[dtype])
    errors = forward_errors(forward_module(name), name, ker, ref)
    assert max(errors.values()) < tol(DTYPES[dtype]), errors


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_large_logits_low_precision(dtype):
    """Logits around 300 from the first token: beta G + gamma Hs cancels the offset, so the first-order products
    run on centred operands (zeros_common.py.jinja); taken plainly in fp16 they miss the tolerance (1.5e-2)."""
    ker, ref = draw("zeros", DTYPES[dtype], offset=300.0, initial=False)
    errors = forward_errors(forward_module("zeros"), "zeros", ker, ref)
    assert max(errors.values()) < tol(DTYPES[dtype]), errors


def test_long_sequence_bf16():
    """T = 4096 (64 chunks of 64): the running max, counts and bf16 operands do not accumulate error over the
    chunks (measured: o 7.3e-3, kv 2.8e-3 relative RMS, as at T = 37)."""
    ker, ref = draw("zeros", torch.bfloat16, B=1, T=4096, H=2, seed=5)
    plan = lower(SPECS["zeros"])["forward"]
    module = load_source(render(plan, plan.validate_config({"chunk_size": 64, "block_v": 16}, partial=True)))
    o, (kv, stats) = module.forward(**ker, scale=1.0, output_final_state=True)
    ro, (rkv, rstats) = attention(SPECS["zeros"], **ref, output_final_state=True, method="recurrent")
    errors = {"o": rel_rms(o, ro), "kv": rel_rms(kv, rkv), "stats": rel_rms(stats, rstats)}
    assert max(errors.values()) < tol(torch.bfloat16), errors


@pytest.mark.parametrize("name,dtype,offset,state_dtype", [("zeros", "fp16", 0., "input"),
                                                           ("zeros_mamba2", "bf16", 0., "input"),
                                                           ("zeros", "fp16", 300., "input"),
                                                           ("zeros", "bf16", 300., "fp32")])
def test_gradients_low_precision(name, dtype, offset, state_dtype):
    """Through slagen.compile + .backward(); the backward recomputes its chunk states (kv in `state_dtype`)."""
    spec = SPECS[name]
    ker, ref = draw(name, DTYPES[dtype], B=1, seed=5, offset=offset, initial=not offset)
    want, do, dht = reference_grads(spec, ref)
    leaves = {n: tuple(p.detach().clone().requires_grad_() for p in x) if n == "initial_state"
              else x.detach().clone().requires_grad_() for n, x in ker.items() if n in want}
    op = slagen.compile(spec, {"chunk_size": 16, "block_v": 16}, recurrent_config={"block_v": 16},
                        backward_config={"chunk_size": 16, "block_v": 16, "state_dtype": state_dtype})
    o, final = op(**{**ker, **leaves}, output_final_state=True)
    assert o.dtype == DTYPES[dtype]
    loss = (o.double() * do).sum() + sum((p.double() * d).sum() for p, d in zip(final, dht))
    loss.backward()
    got = {n: tuple(p.grad for p in x) if n == "initial_state" else x.grad for n, x in leaves.items()}
    for n in ("q", "k", "v"):
        assert got[n].dtype == DTYPES[dtype], n
    assert_grads_close(spec, got, want, tol(DTYPES[dtype]))


def test_chunk_states_in_the_input_dtype_by_default(monkeypatch):
    plan = lower(SPECS["zeros"])["backward"]
    assert plan.default["state_dtype"] == "input"
    assert plan.axis("state_dtype").choices == ("input", "fp32")
    made = []
    real = launch.new_chunk_states
    monkeypatch.setattr(launch, "new_chunk_states", lambda *a: made.append(real(*a)) or made[-1])
    module = load_source(render(plan, plan.validate_config({"chunk_size": 16, "block_v": 16}, partial=True)))
    ker, _ = draw("zeros", torch.float16, B=1, T=20, H=1)
    do = torch.randn(1, 20, 1, 16, dtype=torch.float16)
    grads = module.backward(**ker, scale=1.0, do=do)
    # the chunk states and their gradients (dh)
    assert [t.dtype for t in made] == [torch.float16] * 2 and grads["v"].dtype == torch.float16
    # the forward's two_pass hands its chunk states on in the input dtype too (fp32 when autograd keeps them)
    assert lower(SPECS["zeros"])["forward"].default["state_dtype"] == "input"
    made.clear()
    module = forward_module("zeros")
    module.forward(**ker, scale=1.0)
    module.forward(**ker, scale=1.0, save_states_chunk=16)
    assert [t.dtype for t in made] == [torch.float16]


class AtenOps(TorchDispatchMode):
    """Records the aten ops run on the host, except inside kernel launches (`paused`)."""

    def __init__(self):
        super().__init__()
        self.ops, self.paused = [], False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.paused:
            self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


class Paused:
    def __init__(self, kernel, mode):
        self.kernel, self.mode = kernel, mode

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            self.mode.paused = True
            try:
                return self.kernel[grid](*args, **kwargs)
            finally:
                self.mode.paused = False
        return run


@pytest.mark.parametrize("name", ["sla_zeros", "zeros_gla"])
def test_backward_runs_no_torch_arithmetic(name):
    """Between and after its launches the backward only allocates: the statistics' gradients, the L2-norm and
    read-gate backwards, dm0, the grouped value heads' sums over a group (sla_zeros: HV = 2 H) and the casts run
    in its kernels (issue 17 item 5)."""
    spec = dataclasses.replace(BUILTIN_SPECS["zeros_gla" if name == "zeros_gla" else "zeros"], **SMALL)
    if name == "zeros_gla":  # two V blocks (looped inside the gradient kernels)
        spec = dataclasses.replace(spec, head_dim_v=32)
    if name == "sla_zeros":
        spec = dataclasses.replace(spec, name="sla_zeros", head_gate="read", output_norm="rms", gate_scale="heads")
    plan = lower(spec)["backward"]
    module = load_source(render(plan, plan.validate_config({"chunk_size": 16, "block_v": 16}, partial=True)))
    inp = make_inputs(spec, 1, 20, 2, value_heads=4 if name == "sla_zeros" else None, seed=9, with_initial_state=True)
    ker = {n: tuple(p.float() for p in x) if n == "initial_state" else
           (x.to(torch.float16 if n in ("q", "k", "v") else torch.float32) if x.is_floating_point() else x)
           for n, x in inp.items()}
    mode = AtenOps()
    for kernel in ("zeros_chunk_states", "zeros_bwd_epilogue", "zeros_bwd_dh", "zeros_bwd_dqk", "zeros_bwd_dv",
                   "zeros_bwd_finish", "zeros_bwd_group_sum"):
        setattr(module, kernel, Paused(getattr(module, kernel), mode))
    do = torch.randn(ker["v"].shape, dtype=torch.float16)
    with mode:
        grads = module.backward(**ker, scale=1.0, do=do)
    assert set(mode.ops) <= {"empty", "empty_like", "zeros", "zero_", "fill_", "empty_strided"}, sorted(set(mode.ops))
    assert grads["q"].dtype == torch.float16 and grads["zs_logits"].dtype == torch.float32
