"""The delta rule with fla GatedDeltaNet's gate in the kernels (spec delta_gate = "mamba": g carries the gate's
input a, beta its logits b, and the kernels form g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b)):
the spec axis, the float64 reference, and the kernels against it: outputs, final states and every gradient
(a, b, A_log, dt_bias included), chunked forward (both algorithms), recurrent / decode, backward (both
algorithms), varlen, grouped value heads (HV = 2 H), strided g / beta views, fp16 and bf16, and no host
arithmetic in the backward."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
import torch.nn.functional as F

import slagen
from delta_bwd_helpers import _module as module_of
from delta_bwd_helpers import assert_grads_close, fp32, leaf_names, reference_grads, rel_rms
from host_ops import HostOps, NoLaunch
from slagen.reference import attention, make_inputs
from slagen.spec import BUILTIN_SPECS, SpecError, VariantSpec, load_spec
from test_gva_strided import fused
from tolerances import tol

SMALL = dict(head_dim_k=32, head_dim_v=16, delta_gate="mamba")
SPECS = {
    "gdn": dataclasses.replace(BUILTIN_SPECS["gdn"], name="gdn_mamba", **SMALL),
    # write gate on the computed beta, read gate after the fused norm
    "sla_gdn_both": dataclasses.replace(BUILTIN_SPECS["sla_gdn"], name="sla_gdn_mamba", head_gate="both", **SMALL),
}
GRADS = ("q", "k", "v", "g", "beta", "A_log", "dt_bias", "initial_state")


def case(name, B=2, T=37, H=2, seed=0, **kw):
    return SPECS[name], make_inputs(SPECS[name], B, T, H, seed=seed, with_initial_state=True, **kw)


@functools.lru_cache(maxsize=None)
def op_of(name, algorithm="parallel"):
    config = {"chunk_size": 16, "block_v": 16, "algorithm": algorithm}
    return slagen.compile(SPECS[name], config, recurrent_config={"block_v": 16}, backward_config=config)


# --- the spec axis ---------------------------------------------------------------------------------------

def test_spec_axis_validated_and_default_left_out():
    with pytest.raises(SpecError, match=r"^delta_gate: expected one of \('direct', 'mamba'\), got 'softplus'$"):
        dataclasses.replace(BUILTIN_SPECS["gdn"], delta_gate="softplus")
    with pytest.raises(SpecError, match=r"^delta_gate: expected \"direct\" unless decay = \"delta\""):
        dataclasses.replace(BUILTIN_SPECS["mamba2"], delta_gate="mamba")
    gdn = BUILTIN_SPECS["gdn"]
    # the default is not serialised: built-in specs keep their canonical JSON, hash and renders
    assert "delta_gate" not in gdn.canonical_json() and gdn.delta_gate == "direct"
    mamba = dataclasses.replace(gdn, delta_gate="mamba")
    assert '"delta_gate":"mamba"' in mamba.canonical_json() and mamba.spec_hash != gdn.spec_hash
    assert VariantSpec.from_json(mamba.canonical_json()) == mamba
    assert mamba.required_inputs() == ("g", "beta", "A_log", "dt_bias")


def test_spec_file_and_missing_parameters(tmp_path):
    path = tmp_path / "gdn_fused.toml"
    path.write_text('name = "gdn_fused"\ndecay = "delta"\nqk_l2norm = true\ndelta_gate = "mamba"\n')
    spec = load_spec(str(path))
    assert spec.delta_gate == "mamba"
    inp = make_inputs(spec, 1, 5, 2)
    inp.pop("dt_bias")
    with pytest.raises(ValueError, match=r"^dt_bias: required for delta_gate='mamba'"):
        attention(spec, **inp)


# --- the reference ---------------------------------------------------------------------------------------

def test_reference_is_the_direct_rule_on_the_computed_gate():
    spec, inp = case("gdn", T=21)
    direct = dataclasses.replace(spec, delta_gate="direct")
    g = -inp["A_log"].exp() * F.softplus(inp["g"] + inp["dt_bias"])
    call = {n: x for n, x in inp.items() if n not in ("A_log", "dt_bias")}
    want = attention(direct, **dict(call, g=g, beta=torch.sigmoid(inp["beta"])), output_final_state=True)
    for method in ("naive", "chunked"):
        got = attention(spec, **inp, output_final_state=True, method=method, chunk_size=8)
        assert rel_rms(got[0], want[0]) < 1e-12 and rel_rms(got[1], want[1]) < 1e-12


# --- kernels, fp32 ---------------------------------------------------------------------------------------

@pytest.mark.interpreter
@pytest.mark.parametrize("name, algorithm, B, T, seqlens, HV", [
    ("gdn", "parallel", 2, 21, None, None), ("sla_gdn_both", "one_pass", 1, None, [9, 0, 22], 4)])
def test_forward_and_decode(name, algorithm, B, T, seqlens, HV):
    spec, ref = case(name, B, T, seqlens=seqlens, value_heads=HV, seed=1)
    want = attention(spec, **ref, output_final_state=True)
    ker = fused(fp32(ref))  # q, k, v, and g / beta (the gate's a and b) read in place from strided views
    op = op_of(name, algorithm)
    for run in (op, op.recurrent):
        o, final = run(**ker, output_final_state=True)
        assert rel_rms(o, want[0]) < 1e-5 and rel_rms(final, want[1]) < 1e-5
    if seqlens is None:  # decode: one more token from the state the sequence left
        last = {n: (x[:, -1:] if n in ("q", "k", "v", "g", "beta") else x) for n, x in ref.items()}
        last["initial_state"] = want[1]
        w1 = attention(spec, **last, output_final_state=True)
        o1, f1 = op.recurrent(**fp32(last), output_final_state=True)
        assert rel_rms(o1, w1[0]) < 1e-5 and rel_rms(f1, w1[1]) < 1e-5


@pytest.mark.interpreter
@pytest.mark.parametrize("name, algorithm, B, T, seqlens, HV", [
    ("gdn", "one_pass", 2, 21, None, None), ("sla_gdn_both", "parallel", 1, None, [9, 0, 22], 4)])
def test_backward_matches_reference(name, algorithm, B, T, seqlens, HV):
    spec, ref = case(name, B, T, seqlens=seqlens, value_heads=HV, seed=2)
    want, do, dht = reference_grads(spec, ref)
    assert set(GRADS) <= set(want)
    kw = fused(fp32(ref))
    got = module_of(spec, 16, 16, algorithm).backward(**kw, scale=spec.head_dim_k ** -0.5, do=do.float(),
                                                      dht=dht.float())
    for n in ("A_log", "dt_bias"):
        assert got[n].shape == kw[n].shape and got[n].dtype == kw[n].dtype, n
    assert_grads_close(spec, got, want, 1e-5)


# --- kernels, fp16 and bf16 ------------------------------------------------------------------------------

@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(dtype):
    """Through autograd: q, k, v and the gate's a, b in the input dtype (as a layer's projections give them),
    A_log and dt_bias fp32 parameters."""
    spec, ref = case("sla_gdn_both", B=1, T=21, value_heads=4, seed=4)
    low = ("q", "k", "v", "g", "beta")
    # the reference on the rounded inputs: a and b are rounded before the gate, as the kernels see them
    ref = {n: (x.to(dtype).double() if n in low else x) for n, x in ref.items()}
    want, do, dht = reference_grads(spec, ref)
    out = attention(spec, **ref, output_final_state=True)
    leaves = {n: x.detach().to(dtype if n in low else torch.float32).requires_grad_() for n, x in ref.items()
              if n in leaf_names(ref)}
    o, final = op_of("sla_gdn_both")(**leaves, output_final_state=True)
    assert o.dtype == dtype
    assert rel_rms(o, out[0]) < tol(dtype) and rel_rms(final, out[1]) < tol(dtype)
    ((o.double() * do).sum() + (final.double() * dht).sum()).backward()
    for n, t in leaves.items():
        assert t.grad.dtype == t.dtype and rel_rms(t.grad, want[n]) < 2.5 * tol(dtype), n


# --- no host arithmetic ----------------------------------------------------------------------------------

KERNELS = {"one_pass": ("delta_chunk_prepare", "delta_chunk_recurrence", "delta_chunk_backward", "delta_bwd_finish",
                        "delta_gate_param_grads"),
           "parallel": ("delta_chunk_prepare", "delta_chunk_recurrence", "delta_bwd_dv_local", "delta_bwd_dh",
                        "delta_bwd_dqk", "delta_bwd_wy", "delta_bwd_finish", "delta_gate_param_grads")}


@pytest.mark.parametrize("algorithm", list(KERNELS))
def test_backward_does_no_arithmetic_on_the_host(algorithm, monkeypatch):
    """The gate's backward (da, db per token, dA_log and ddt_bias per head) runs in kernels: between its
    launches the backward only allocates."""
    monkeypatch.setenv("SLAGEN_POISON_OUTPUTS", "0")  # the tests' NaN fill of new outputs is a host op
    spec, inp = case("sla_gdn_both", B=1, T=21, seed=3)
    module = module_of(spec, 16, 16, algorithm)
    names = module.backward.__globals__
    kernels = {n: NoLaunch(names[n]) for n in KERNELS[algorithm]}
    for n, stand_in in kernels.items():
        monkeypatch.setitem(names, n, stand_in)
    kw = {n: x.float() if x.is_floating_point() else x for n, x in inp.items()}
    do, dht = torch.randn(1, 21, 2, spec.head_dim_v), torch.randn_like(kw["initial_state"])
    with HostOps() as host:
        grads = module.backward(**kw, scale=0.5, do=do, dht=dht)
    assert host.ops == []
    assert grads["A_log"] is not None and grads["dt_bias"] is not None
    assert {n: k.count for n, k in kernels.items()} == dict.fromkeys(kernels, 1)
