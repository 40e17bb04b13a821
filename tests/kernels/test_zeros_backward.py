"""ZeroS backward (plain and the experimental decayed forms) against float64 autograd of the naive reference:
q, k, v (through the unit norm), zs_logits, zs_gate1, zs_gateh, g (scalar / vector decay), read logits,
norm weight and the initial state (kv, E~, P, n; m by the state's scale freedom), with a final-state gradient
coming in, T not a multiple of the chunk, two configs each, varlen == a loop over sequences, logits shifted
by 500 (finite, unchanged gradients), and through `slagen.compile` + `.backward()`. fp32 kernels on CPU
tensors under the interpreter; `gpu` tests repeat a few in bf16 on CUDA.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from delta_bwd_helpers import (assert_grads_close, autograd_grads, compiled, module_grads, reference_grads,
                               rel_rms)
from slagen.reference import make_inputs
from slagen.spec import BUILTIN_SPECS

SMALL = dict(head_dim_k=32, head_dim_v=16)
SPECS = {name: dataclasses.replace(BUILTIN_SPECS[name], **SMALL)
         for name in ("zeros", "zeros_retnet", "zeros_mamba2", "zeros_gla")}
# read gate after a fused RMSNorm (V split is impossible there), gate scale H
SPECS["sla_zeros"] = dataclasses.replace(BUILTIN_SPECS["zeros"], name="sla_zeros", head_gate="read",
                                         output_norm="rms", gate_scale="heads", **SMALL)
SPECS["zeros_wide"] = dataclasses.replace(BUILTIN_SPECS["zeros_mamba2"], name="zeros_wide", head_dim_k=24,
                                          head_dim_v=32)
TOL = 2e-5


def case(name, B=2, T=37, H=2, seed=0, **kw):
    spec = SPECS[name]
    return spec, make_inputs(spec, B, T, H, seed=seed, **kw)


CONFIGS = [(name, c, 16) for name in ("zeros", "zeros_retnet", "zeros_mamba2", "zeros_gla") for c in (16, 32)]
CONFIGS += [("sla_zeros", 16, 16), ("zeros_wide", 16, 16)]  # zeros_wide: K masked, V in two blocks


@pytest.mark.interpreter
@pytest.mark.parametrize("name, chunk_size, block_v", CONFIGS)
def test_module_gradients_match_reference(name, chunk_size, block_v):
    B = 1 if name == "zeros_gla" else 2  # the per-channel tile goes one column at a time: slow when interpreted
    spec, inp = case(name, B=B, seed=chunk_size, with_initial_state=True)
    want, do, dht = reference_grads(spec, inp)
    assert_grads_close(spec, module_grads(spec, inp, do, dht, chunk_size, block_v), want, TOL)


@pytest.mark.interpreter
def test_without_state_or_final_gradient():
    spec, inp = case("zeros_mamba2", B=1, T=21, seed=3)
    want, do, _ = reference_grads(spec, inp, with_final=False)
    got = module_grads(spec, inp, do, None)
    assert got["initial_state"] is None
    assert_grads_close(spec, got, want, TOL)


@pytest.mark.interpreter
@pytest.mark.parametrize("name", ["zeros", "zeros_mamba2"])
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
        one["initial_state"] = tuple(p[i:i + 1] for p in inp["initial_state"])
        g1 = module_grads(spec, one, do[:, t0:t1].contiguous(), tuple(d[i:i + 1].contiguous() for d in dht))
        for n in ("q", "k", "v", "zs_logits", "zs_gate1", "zs_gateh") + (("g",) if "g" in inp else ()):
            assert rel_rms(got[n][:, t0:t1], g1[n]) < 1e-6, n
        for j in range(2):
            assert rel_rms(got["initial_state"][j][i:i + 1], g1["initial_state"][j]) < 1e-6


@pytest.mark.interpreter
@pytest.mark.parametrize("name", ["zeros", "zeros_mamba2"])
def test_logit_shift_gives_finite_unchanged_gradients(name):
    """s + 500 everywhere (the carried state shifted to match: m + 500, P + 500 n, G + 500 Hs): every gradient
    is finite and unchanged, except those of the initial state's Hs, P, n (the shift moves the others into them)."""
    spec, inp = case(name, B=1, T=37, seed=4, with_initial_state=True)
    _, do, dht = reference_grads(spec, inp)
    dht[0][:, :, 1] = 0.  # the final G and P move with the shift (by 500 Hs, 500 n): leave their gradients out
    dht[1][..., 1:] = 0.
    base = module_grads(spec, inp, do, dht)
    kv, st = (p.clone() for p in inp["initial_state"])
    kv[:, :, 1] += 500. * kv[:, :, 2]
    st[..., 2] += 500.
    st[..., 1] += 500. * st[..., 3]
    shifted = module_grads(spec, {**inp, "zs_logits": inp["zs_logits"] + 500., "initial_state": (kv, st)}, do, dht)
    for n in ("q", "k", "v", "zs_logits", "zs_gate1", "zs_gateh") + (("g",) if "g" in inp else ()):
        assert torch.isfinite(shifted[n]).all(), n
        assert rel_rms(shifted[n], base[n]) < 2e-3, n
    (dkv, dst), (dkv0, dst0) = shifted["initial_state"], base["initial_state"]
    assert torch.isfinite(dkv).all() and torch.isfinite(dst).all()
    for got, ref in ((dkv[:, :, 0], dkv0[:, :, 0]), (dkv[:, :, 1], dkv0[:, :, 1]), (dst[..., 0], dst0[..., 0])):
        assert rel_rms(got, ref) < 2e-3


@pytest.mark.interpreter
@pytest.mark.parametrize("name", ["zeros", "sla_zeros"])
def test_autograd_through_compiled_op(name):
    spec, inp = case(name, B=1, T=27, seed=7, with_initial_state=True)
    want, do, dht = reference_grads(spec, inp)
    assert_grads_close(spec, autograd_grads(compiled(spec), spec, inp, do, dht), want, TOL)


# --- CUDA (bf16) -----------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["zeros", "zeros_mamba2", "zeros_gla"])
def test_gpu_bf16_gradients(name):
    spec = dataclasses.replace(BUILTIN_SPECS[name], head_dim_k=64, head_dim_v=64)
    inp = make_inputs(spec, 2, 200, 4, seed=1, with_initial_state=True)
    want, do, dht = reference_grads(spec, inp)
    leaves = {n: (tuple(p.float().cuda().requires_grad_() for p in x) if n == "initial_state" else
                  (x.to(torch.bfloat16) if n in ("q", "k", "v") else x.float()).cuda().requires_grad_())
              for n, x in inp.items() if n != "g_gamma"}
    extra = {"g_gamma": inp["g_gamma"].float().cuda()} if "g_gamma" in inp else {}
    o, (kv, st) = compiled(spec, 32, 32)(**leaves, **extra, output_final_state=True)
    loss = (o.double() * do.cuda()).sum() + (kv.double() * dht[0].cuda()).sum() + (st.double() * dht[1].cuda()).sum()
    loss.backward()
    for n, w in want.items():
        got = leaves[n].grad if n != "initial_state" else leaves[n][0].grad
        w = w if n != "initial_state" else w[0]
        assert rel_rms(got, w) < 3e-2, n
