"""ZeroS with fp16 and bf16 q, k, v (logits, gates and states fp32, as callers keep them): outputs, final states
and every gradient against the float64 reference on the exact draw, tolerances from tolerances.py; and the
precision-critical first-order dots (zeros_common.py.jinja: FIRST_ORDER_DOT) shown to need fp32 operands.

fp16 runs the tensor-core operand path itself under the interpreter; bf16 runs launch.dot_operands' interpreter
form (operands rounded to bf16, multiplied in fp32: the interpreter's bf16 dot is wrong, triton #11584).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from delta_bwd_helpers import assert_grads_close, compiled, reference_grads, rel_rms
from slagen.codegen import lower, render
from slagen.reference import attention, make_inputs
from slagen.runtime.loader import load_source
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


def forward_module(name, **patch):
    plan = lower(SPECS[name])["forward"]
    module = load_source(render(plan, plan.validate_config({"chunk_size": 16, "block_v": 16}, partial=True)))
    for key, value in patch.items():
        setattr(module, key, value)
    return module


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


def test_first_order_dots_need_fp32_operands():
    """Logits around 300 from the first token (no carried state): beta G + gamma Hs cancels the offset. fp16
    operands on those dots miss the fp16 tolerance (~1.5e-2 against 2e-3), the shipped fp32 (TF32x3) ones meet it."""
    ker, ref = draw("zeros", torch.float16, offset=300.0, initial=False)
    good = forward_errors(forward_module("zeros"), "zeros", ker, ref)
    bad = forward_errors(forward_module("zeros", FIRST_ORDER_DOT="fp16"), "zeros", ker, ref)
    assert good["o"] < tol(torch.float16) < bad["o"], (good, bad)


@pytest.mark.parametrize("name,dtype", [("zeros", "fp16"), ("zeros_mamba2", "bf16")])
def test_gradients_low_precision(name, dtype):
    spec = SPECS[name]
    ker, ref = draw(name, DTYPES[dtype], B=1, seed=5)
    want, do, dht = reference_grads(spec, ref)
    leaves = {n: tuple(p.detach().clone().requires_grad_() for p in x) if n == "initial_state"
              else x.detach().clone().requires_grad_() for n, x in ker.items() if n in want}
    o, final = compiled(spec)(**{**ker, **leaves}, output_final_state=True)
    assert o.dtype == DTYPES[dtype]
    loss = (o.double() * do).sum() + sum((p.double() * d).sum() for p, d in zip(final, dht))
    loss.backward()
    got = {n: tuple(p.grad for p in x) if n == "initial_state" else x.grad for n, x in leaves.items()}
    for n in ("q", "k", "v"):
        assert got[n].dtype == DTYPES[dtype], n
    assert_grads_close(spec, got, want, tol(DTYPES[dtype]))
