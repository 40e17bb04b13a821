"""Gated DeltaNet backward (chunked WY / UT, with SLA gates folded in) against float64 autograd of the naive
reference: every differentiable input (q, k, v, g, beta, read/write logits, norm weight, initial state) with
a final-state gradient coming in, T not a multiple of the chunk, two configs (one splitting V), varlen ==
a loop over sequences, and the same through `slagen.compile` + `.backward()`. fp32 kernels on CPU tensors
under the interpreter; `gpu` tests repeat a few in bf16 on CUDA.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from delta_bwd_helpers import _module as module_of
from delta_bwd_helpers import (assert_grads_close, autograd_grads, compiled, module_grads,
                               reference_grads, rel_rms)
from host_ops import HostOps, NoLaunch
from slagen.reference import attention, make_inputs
from slagen.spec import BUILTIN_SPECS

SMALL = dict(head_dim_k=32, head_dim_v=16)
SPECS = {
    "gdn": dataclasses.replace(BUILTIN_SPECS["gdn"], **SMALL),
    "sla_gdn": dataclasses.replace(BUILTIN_SPECS["sla_gdn"], **SMALL),
    # write gate folded into beta, read gate without a norm, tempered softmax; V split in two blocks
    "sla_gdn_both": dataclasses.replace(BUILTIN_SPECS["sla_gdn"], name="sla_gdn_both", head_gate="both",
                                        output_norm="none", gate_temperature=2.0, head_dim_k=32, head_dim_v=32),
}
TOL = 1e-5


def case(name, B=2, T=37, H=2, seed=0, **kw):
    spec = SPECS[name]
    inp = make_inputs(spec, B, T, H, seed=seed, **kw)
    return spec, inp


@pytest.mark.interpreter
@pytest.mark.parametrize("name, chunk_size, block_v, algorithm", [
    ("gdn", 16, 16, None), ("gdn", 32, 16, None), ("sla_gdn", 16, 16, None), ("sla_gdn", 32, 16, None),
    ("sla_gdn_both", 16, 16, None), ("sla_gdn_both", 32, 32, None),
    # the parallel default at 64-token chunks (four 16 x 16 diagonal blocks merged); the single walk
    ("gdn", 64, 16, None), ("gdn", 16, 16, "one_pass"), ("sla_gdn_both", 32, 32, "one_pass")])
def test_module_gradients_match_reference(name, chunk_size, block_v, algorithm):
    spec, inp = case(name, seed=chunk_size, with_initial_state=True)
    want, do, dht = reference_grads(spec, inp)
    assert_grads_close(spec, module_grads(spec, inp, do, dht, chunk_size, block_v, algorithm), want, TOL)


@pytest.mark.interpreter
def test_without_state_or_final_gradient():
    spec, inp = case("sla_gdn", B=1, T=21, seed=3)
    want, do, dht = reference_grads(spec, inp, with_final=False)
    got = module_grads(spec, inp, do, None)
    assert got["initial_state"] is None
    assert_grads_close(spec, got, want, TOL)


@pytest.mark.interpreter
@pytest.mark.parametrize("name", ["gdn", "sla_gdn_both"])
def test_varlen_equals_loop_over_sequences(name):
    seqlens = [7, 0, 21, 3]
    spec, inp = case(name, B=1, T=None, seqlens=seqlens, with_initial_state=True, seed=11)
    want, do, dht = reference_grads(spec, inp)
    got = module_grads(spec, inp, do, dht)
    assert_grads_close(spec, got, want, TOL)
    bounds = [0]
    for n in seqlens:
        bounds.append(bounds[-1] + n)
    for i, (t0, t1) in enumerate(zip(bounds[:-1], bounds[1:])):
        if t0 == t1:
            continue
        one = {n: x[:, t0:t1].contiguous() if n != "initial_state" and x.dim() >= 3 else x
               for n, x in inp.items() if n != "cu_seqlens"}
        one["initial_state"] = inp["initial_state"][i:i + 1]
        g1 = module_grads(spec, one, do[:, t0:t1].contiguous(), dht[i:i + 1].contiguous())
        for n in ("q", "k", "v", "g", "beta"):
            assert rel_rms(got[n][:, t0:t1], g1[n]) < 1e-6, n
        assert rel_rms(got["initial_state"][i:i + 1], g1["initial_state"]) < 1e-6
    empty = 1  # an empty sequence passes its state gradient straight through
    assert rel_rms(got["initial_state"][empty], dht[empty]) < 1e-6


@pytest.mark.interpreter
@pytest.mark.parametrize("recurrent", [False, True], ids=["chunked", "recurrent"])
def test_autograd_through_compiled_op(recurrent):
    spec, inp = case("sla_gdn", B=1, T=27, seed=7, with_initial_state=True)
    want, do, dht = reference_grads(spec, inp)
    got = autograd_grads(compiled(spec), spec, inp, do, dht, recurrent=recurrent)
    assert_grads_close(spec, got, want, TOL)


KERNELS = {"one_pass": ("delta_chunk_prepare", "delta_chunk_recurrence", "delta_chunk_backward", "delta_bwd_finish"),
           "parallel": ("delta_chunk_prepare", "delta_chunk_recurrence", "delta_bwd_dv_local", "delta_bwd_dh",
                        "delta_bwd_dqk", "delta_bwd_wy", "delta_bwd_finish")}


@pytest.mark.parametrize("algorithm", list(KERNELS))
@pytest.mark.parametrize("name", ["sla_gdn", "sla_gdn_both"])
def test_backward_does_no_arithmetic_on_the_host(name, algorithm, monkeypatch):
    """Partial sums over V blocks, the L2-norm backward, the head-gate Jacobians and the casts all run in
    kernels: between its launches the backward only allocates (fp32 and bf16 inputs)."""
    monkeypatch.setenv("SLAGEN_POISON_OUTPUTS", "0")  # the tests' NaN fill of new outputs is a host op
    spec, inp = case(name, B=1, T=21, seed=3, with_initial_state=True)
    module = module_of(spec, 16, 16, algorithm)
    names = module.backward.__globals__
    kernels = {n: NoLaunch(names[n]) for n in KERNELS[algorithm]}
    for n, stand_in in kernels.items():
        monkeypatch.setitem(names, n, stand_in)
    for dtype in (torch.float32, torch.bfloat16):
        kw = {n: (x.to(dtype) if n in ("q", "k", "v") else x.float()) if x.is_floating_point() else x
              for n, x in inp.items()}
        do, dht = torch.randn(1, 21, 2, spec.head_dim_v).to(dtype), torch.randn_like(kw["initial_state"])
        with HostOps() as host:
            module.backward(**kw, scale=0.5, do=do, dht=dht)
        assert host.ops == [], dtype
    assert {n: k.count for n, k in kernels.items()} == dict.fromkeys(kernels, 2)


# --- CUDA (bf16) -----------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["gdn", "sla_gdn"])
def test_gpu_bf16_gradients(name):
    spec = dataclasses.replace(BUILTIN_SPECS[name], head_dim_k=128, head_dim_v=128)
    inp = make_inputs(spec, 2, 300, 4, seed=1, with_initial_state=True)
    want, do, dht = reference_grads(spec, inp)
    leaves = {n: (x.to(torch.bfloat16) if n in ("q", "k", "v") else x.float()).cuda().requires_grad_()
              for n, x in inp.items()}
    o, st = compiled(spec, 64, 128)(**leaves, output_final_state=True)
    ((o.double() * do.cuda()).sum() + (st.double() * dht.cuda()).sum()).backward()
    for n, w in want.items():
        assert rel_rms(leaves[n].grad, w) < 3e-2, n
    assert attention  # the reference import is shared with the forward tests
