"""Grouped value heads (HV = G * H, value head j reads q/k head j // G) and strided inputs (views split from
one fused projection, read in place) on the delta rule's chunked kernels: the forward (both algorithms) and
the backward (parallel and one-pass; every gradient: q, k, v, g, beta, the gate logits, norm weight, initial
state), fixed-length and varlen, against the float64 reference; fp32 under the interpreter, fp16 on CPU."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

import slagen
from delta_bwd_helpers import _module as module_of
from delta_bwd_helpers import assert_grads_close, fp32, reference_grads, rel_rms
from slagen.reference import attention, make_inputs
from slagen.spec import BUILTIN_SPECS
from test_gva_strided import fused

H, HV = 2, 4
SMALL = dict(head_dim_k=32, head_dim_v=16)
SPECS = {
    "gdn": dataclasses.replace(BUILTIN_SPECS["gdn"], **SMALL),
    "sla_gdn": dataclasses.replace(BUILTIN_SPECS["sla_gdn"], **SMALL),
    # both gates, no norm, no qk L2 norm (the raw key gradients summed over each group)
    "sla_gdn_both": dataclasses.replace(BUILTIN_SPECS["sla_gdn"], name="sla_gdn_both", head_gate="both",
                                        output_norm="none", gate_temperature=2.0, qk_l2norm=False, **SMALL),
}


def case(name, B, T, seed, seqlens=None):
    return make_inputs(SPECS[name], B, T, H, value_heads=HV, seed=seed, seqlens=seqlens, with_initial_state=True)


@functools.lru_cache(maxsize=None)
def op_of(name, algorithm):
    return slagen.compile(SPECS[name], {"chunk_size": 16, "block_v": 16, "algorithm": algorithm},
                          backward_config={"chunk_size": 16, "block_v": 16, "algorithm": algorithm})


@pytest.mark.interpreter
@pytest.mark.parametrize("algorithm", ["parallel", "one_pass"])
@pytest.mark.parametrize("name, B, T, seqlens", [("gdn", 2, 37, None), ("sla_gdn", 1, None, [9, 30, 1])])
def test_forward(name, algorithm, B, T, seqlens):
    ref = case(name, B, T, 1, seqlens)
    want = attention(SPECS[name], **ref, output_final_state=True)
    ker = fused(fp32(ref))
    o, final = op_of(name, algorithm)(**ker, output_final_state=True)
    assert o.shape == ker["v"].shape and o.is_contiguous()
    assert rel_rms(o, want[0]) < 1e-5 and rel_rms(final, want[1]) < 1e-5


@pytest.mark.interpreter
@pytest.mark.parametrize("name, algorithm, B, T, seqlens", [
    ("sla_gdn", "parallel", 1, None, [9, 30, 1]),
    ("sla_gdn_both", "parallel", 1, 21, None), ("sla_gdn", "one_pass", 1, 37, None)])
def test_backward(name, algorithm, B, T, seqlens):
    spec = SPECS[name]
    ref = case(name, B, T, 2, seqlens)
    want, do, dht = reference_grads(spec, ref)
    kw = fused(fp32(ref))
    got = module_of(spec, 16, 16, algorithm).backward(**kw, scale=spec.head_dim_k ** -0.5, do=do.float(),
                                                      dht=dht.float())
    for n in ("q", "k", "v", "g", "beta"):
        assert got[n].shape == kw[n].shape and got[n].is_contiguous(), n
    assert_grads_close(spec, got, want, 1e-5)


@pytest.mark.interpreter
def test_autograd_through_fused_projection():
    # one fused [B, T, 3 * D] leaf split into q, k, v views: gradients come back into it, in its layout
    spec = SPECS["gdn"]
    ref = case("gdn", 1, 21, 3)
    want, do, dht = reference_grads(spec, ref)
    x = fused({n: t.detach() for n, t in fp32(ref).items()})
    proj = x["q"]._base.requires_grad_(True)
    ends = [0] + torch.tensor([x[n][0, 0].numel() for n in ("q", "k", "v")]).cumsum(0).tolist()
    q, k, v = (proj[..., a:b].view(x[n].shape) for n, a, b in zip(("q", "k", "v"), ends[:-1], ends[1:]))
    leaves = {n: x[n].detach().clone().requires_grad_() for n in ("g", "beta", "initial_state")}
    o, final = op_of("gdn", "parallel")(q, k, v, **leaves, output_final_state=True)
    ((o.double() * do).sum() + (final.double() * dht).sum()).backward()
    got = torch.cat([want[n].flatten(2) for n in ("q", "k", "v")], -1)
    assert rel_rms(proj.grad, got) < 1e-5
    for n, t in leaves.items():
        assert rel_rms(t.grad, want[n]) < 1e-5, n


@pytest.mark.interpreter
def test_fp16_forward_and_backward():
    # fp16 inputs (fp16 tensor-core operands), grouped heads, strided views: within fp16's error of float64
    spec = SPECS["sla_gdn"]
    ref = case("sla_gdn", 1, 37, 4)
    want, do, dht = reference_grads(spec, ref)
    ker = fused({n: (t.half() if n not in ("initial_state", "cu_seqlens") else t.float()) for n, t in ref.items()})
    leaves = {n: t.detach().requires_grad_() for n, t in ker.items()}
    o, final = op_of("sla_gdn", "parallel")(**leaves, output_final_state=True)
    assert o.dtype == torch.float16
    ref_o = attention(spec, **ref, output_final_state=True)
    assert rel_rms(o, ref_o[0]) < 2e-2 and rel_rms(final, ref_o[1]) < 2e-2
    ((o.double() * do).sum() + (final.double() * dht).sum()).backward()
    for n, t in leaves.items():
        assert t.grad.dtype == t.dtype and rel_rms(t.grad, want[n]) < 5e-2, n
