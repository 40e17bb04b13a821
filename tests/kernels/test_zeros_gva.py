"""ZeroS with grouped value heads (HV = G * H, G = 2: value head j reads q/k head j // G) and strided inputs
(q, k, v and g views split on the last dim of fused projections, read in place): chunked forward (both
algorithms), the decode pass, varlen, initial / final states and every gradient (q, k, v through views of one
fused projection, g, the ZeroS inputs, the read gate's logits, the norm weight, the initial state), against
the float64 reference (which repeats q, k per group). fp32 under the interpreter, and one bf16 case.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

import slagen
from delta_bwd_helpers import assert_grads_close, fp32, parts, reference_grads, rel_rms
from slagen.reference import attention, make_inputs
from slagen.runtime import launch
from slagen.spec import BUILTIN_SPECS
from tolerances import tol

pytestmark = pytest.mark.interpreter
H, HV = 2, 4
SMALL = dict(head_dim_k=32, head_dim_v=16)
SPECS = {name: dataclasses.replace(BUILTIN_SPECS[name], **SMALL) for name in ("zeros", "zeros_mamba2", "zeros_gla")}
# read gate over the HV heads after a fused RMSNorm with a weight, gate scale HV
SPECS["sla_zeros"] = dataclasses.replace(BUILTIN_SPECS["zeros"], name="sla_zeros", head_gate="read",
                                         output_norm="rms", gate_scale="heads", **SMALL)


@functools.lru_cache(maxsize=None)
def op_of(name, algorithm="two_pass"):
    return slagen.compile(SPECS[name], {"chunk_size": 16, "block_v": 16, "algorithm": algorithm},
                          recurrent_config={"block_v": 16},
                          backward_config={"chunk_size": 16, "block_v": 16})


def draw(name, B, T, seqlens=None, seed=0, dtype=torch.float32):
    ref = make_inputs(SPECS[name], B, T, H, value_heads=HV, seed=seed, seqlens=seqlens, with_initial_state=True)
    ker = {n: tuple(p.float() for p in x) if n == "initial_state" else
           (x.to(dtype if n in ("q", "k", "v") else torch.float32) if x.is_floating_point() else x)
           for n, x in ref.items()}
    return ker, ref


def fused_leaves(ker):
    """Leaves for autograd: one fused [B, T, (2 H K + HV V)] projection holding q, k, v as views on its last dim,
    and g as a view of a wider [B, T, *] buffer; returns (call inputs, {name: leaf})."""
    B, T = ker["q"].shape[:2]
    proj = torch.cat([ker[n].flatten(2) for n in ("q", "k", "v")], -1).detach().clone().requires_grad_()
    call, at = dict(ker), 0
    for n in ("q", "k", "v"):
        width = ker[n][0, 0].numel()
        call[n] = proj[..., at:at + width].view(ker[n].shape)
        assert not call[n].is_contiguous() and launch.in_place(call[n])
        at += width
    leaves = {"proj": proj}
    if "g" in ker:
        wide = torch.cat([ker["g"].flatten(2), torch.zeros(B, T, 3)], -1).requires_grad_()
        call["g"] = wide[..., :ker["g"][0, 0].numel()].view(ker["g"].shape)
        assert not call["g"].is_contiguous() and launch.in_place(call["g"])
        leaves["g"] = wide
    for n, x in ker.items():
        if n in ("q", "k", "v", "g", "cu_seqlens", "g_gamma"):
            continue
        if n == "initial_state":
            call[n] = tuple(p.detach().clone().requires_grad_() for p in x)
            leaves[n] = call[n]
        elif isinstance(x, torch.Tensor) and x.is_floating_point():
            call[n] = x.detach().clone().requires_grad_()
            leaves[n] = call[n]
    return call, leaves


def grads_of(ker, leaves):
    """The leaves' gradients under the inputs' names (q, k, v cut from the fused projection's)."""
    got = {n: tuple(p.grad for p in x) if n == "initial_state" else x.grad for n, x in leaves.items()
           if n not in ("proj", "g")}
    at = 0
    for n in ("q", "k", "v"):
        width = ker[n][0, 0].numel()
        got[n] = leaves["proj"].grad[..., at:at + width].reshape(ker[n].shape)
        at += width
    if "g" in leaves:
        got["g"] = leaves["g"].grad[..., :ker["g"][0, 0].numel()].reshape(ker["g"].shape)
        assert (leaves["g"].grad[..., ker["g"][0, 0].numel():] == 0).all()
    return got


def check(name, ker, ref, run, tolerance, with_grads=True):
    spec = SPECS[name]
    call, leaves = fused_leaves(ker)
    o, final = run(**call, output_final_state=True)
    assert o.shape == ker["v"].shape and o.is_contiguous() and o.dtype == ker["v"].dtype
    ro, rfinal = attention(spec, **ref, output_final_state=True, method="naive")
    errors = {"o": rel_rms(o, ro), "kv": rel_rms(final[0], rfinal[0]), "stats": rel_rms(final[1], rfinal[1])}
    assert max(errors.values()) < tolerance, errors
    if not with_grads:
        return
    want, do, dht = reference_grads(spec, ref)
    loss = (o.double() * do).sum() + sum((p.double() * d).sum() for p, d in zip(parts(final), parts(dht)))
    loss.backward()
    got = grads_of(ker, leaves)
    assert got["q"].shape == ker["q"].shape and got["v"].shape == ker["v"].shape
    assert_grads_close(spec, got, want, tolerance)


@pytest.mark.parametrize("name", ["zeros_mamba2", "sla_zeros", "zeros_gla"])
def test_grouped_strided_forward_and_gradients(name):
    ker, ref = draw(name, 1, 18 if name == "zeros_gla" else 21, seed=1)
    check(name, ker, ref, op_of(name), tol(torch.float32))


def test_grouped_strided_one_pass_and_decode():
    ker, ref = draw("zeros_mamba2", 2, 19, seed=2)
    check("zeros_mamba2", ker, ref, op_of("zeros_mamba2", "one_pass"), tol(torch.float32), with_grads=False)
    # the decode pass (a few tokens from a state), and its gradients (the backward recomputes the chunk states)
    ker, ref = draw("zeros_mamba2", 2, 3, seed=3)
    check("zeros_mamba2", ker, ref, op_of("zeros_mamba2").recurrent, tol(torch.float32))
    ker, ref = draw("sla_zeros", 1, 3, seed=3)
    check("sla_zeros", ker, ref, op_of("sla_zeros").recurrent, tol(torch.float32), with_grads=False)


def test_grouped_strided_varlen():
    ker, ref = draw("zeros_mamba2", 1, None, seqlens=[7, 0, 18, 3], seed=4)
    check("zeros_mamba2", ker, ref, op_of("zeros_mamba2"), tol(torch.float32))
    check("zeros_mamba2", ker, ref, op_of("zeros_mamba2").recurrent, tol(torch.float32), with_grads=False)


def test_grouped_strided_bf16():
    ker, ref = draw("zeros_mamba2", 1, 20, seed=5, dtype=torch.bfloat16)
    check("zeros_mamba2", ker, ref, op_of("zeros_mamba2"), tol(torch.bfloat16))


def test_grouped_heads_equal_repeated_qk():
    """G = 2 gives what the same op computes on q, k repeated per group (HV = H there): same kernels, G = 1."""
    ker, _ = draw("zeros_mamba2", 1, 18, seed=6)
    o, (kv, st) = op_of("zeros_mamba2")(**ker, output_final_state=True)
    rep = dict(ker, q=ker["q"].repeat_interleave(HV // H, 2), k=ker["k"].repeat_interleave(HV // H, 2))
    ro, (rkv, rst) = op_of("zeros_mamba2")(**rep, output_final_state=True)
    torch.testing.assert_close(o, ro)
    torch.testing.assert_close(kv, rkv)
    torch.testing.assert_close(st, rst)
    assert fp32(o).shape == (1, 18, HV, SMALL["head_dim_v"])
