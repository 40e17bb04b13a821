"""Grouped value heads (HV = G * H: value head j reads q/k head j // G) and strided inputs (views of one
fused projection read in place) on the kernels that take them: the gated family's chunked forward, recurrent
pass and backward (scalar decay, GLA, SLA forms; every gradient) and the delta rule's recurrent pass, against
the reference (the delta rule's chunked forward and backward: test_delta_gva.py; context parallelism:
tests/cp/test_cp.py); and other layouts are copied once."""

from __future__ import annotations

import functools

import pytest
import torch

import slagen
from slagen.reference import attention, make_inputs
from slagen.runtime import launch

from gated_bwd_helpers import assert_grads_close, incoming, loss
from gated_helpers import assert_close, small_spec
from host_ops import HostOps, NoLaunch
from tolerances import tol

H, HV = 2, 4


def spec_of(name):
    return small_spec(name)  # a built-in at SMALL dims, or one of gated_helpers.EXTRA


ONE_PASS = (("chunk_size", 16), ("algorithm", "one_pass"), ("block_k", 32))


# two K blocks (K = 32) in every backward kernel: dq / dk and scalar db summed over blocks and value heads
BACKWARD = (("chunk_size", 16), ("block_k", 16), ("block_v", 16))


@functools.lru_cache(maxsize=None)
def op_of(name, config=(), backward=()):
    return slagen.compile(spec_of(name), dict(config), recurrent_config={"block_v": 16},
                          backward_config=dict(backward))


def fused(x: dict) -> dict:
    """q, k, v (and g, beta) as views split on the last dim of one fused [B, T, *] projection each."""
    out = dict(x)
    B, T = x["q"].shape[:2]
    qkv = torch.cat([x[n].flatten(2) for n in ("q", "k", "v")], -1).clone()
    ends = torch.tensor([x[n][0, 0].numel() for n in ("q", "k", "v")]).cumsum(0).tolist()
    for n, a, b in zip(("q", "k", "v"), [0] + ends[:-1], ends):
        out[n] = qkv[..., a:b].view(x[n].shape)
        assert not out[n].is_contiguous() and launch.in_place(out[n])
    gates = [n for n in ("g", "beta") if n in x]
    if gates:
        packed = torch.cat([x[n].flatten(2) for n in gates] + [torch.zeros(B, T, 3)], -1).clone()
        at = 0
        for n in gates:
            w = x[n][0, 0].numel()
            out[n] = packed[..., at:at + w].view(x[n].shape)
            at += w
    return out


def case(name, B, T, seqlens=None, seed=0, value_heads=HV):
    ref = make_inputs(spec_of(name), B, T, H, value_heads=value_heads, seed=seed, seqlens=seqlens,
                      with_initial_state=True)
    ker = {n: (t.float() if t.is_floating_point() else t) for n, t in ref.items()}
    return ker, ref


def check(name, ker, ref, recurrent, config=()):
    op = op_of(name, config)
    run = op.recurrent if recurrent else op
    got = run(**ker, output_final_state=True)
    want = attention(spec_of(name), **ref, output_final_state=True)
    assert got[0].shape == ker["v"].shape and got[0].is_contiguous()
    assert got[1].shape == (want[1].shape)
    assert_close(got, want, 2e-3)


@pytest.mark.parametrize("recurrent", [False, True], ids=["chunked", "recurrent"])
@pytest.mark.parametrize("name", ["mamba2", "gla", "sla_retnet"])
def test_gva_strided(name, recurrent):
    ker, ref = case(name, 2, 21)
    check(name, ker, ref, recurrent)  # grouped heads, contiguous
    check(name, fused(ker), ref, recurrent)  # grouped heads, views of fused projections


@pytest.mark.parametrize("name", ["sla_mamba2", "gla"])
def test_gva_strided_varlen(name):
    ker, ref = case(name, 1, None, seqlens=[9, 30, 1], seed=1)
    check(name, fused(ker), ref, False)
    check(name, fused(ker), ref, True)


@pytest.mark.parametrize("name", ["sla_mamba2", "gla"])
def test_gva_strided_one_pass(name):
    ker, ref = case(name, 1, 35, seed=5)
    check(name, fused(ker), ref, False, ONE_PASS)


def test_delta_recurrent_gva_strided():
    ker, ref = case("sla_gdn", 2, 5, seed=2)
    check("sla_gdn", fused(ker), ref, True)
    ker, ref = case("gdn", 1, None, seqlens=[3, 4], seed=3)
    check("gdn", fused(ker), ref, True)


def grad_leaves(x: dict, dtype) -> dict:
    """Every floating input but g_gamma a leaf that requires grad, keeping its strides (views stay views);
    q, k, v in `dtype`, the rest fp32."""
    out = {}
    for n, t in x.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            t = t.detach()
            if n in ("q", "k", "v") and t.dtype != dtype:
                t = t.to(dtype)
            out[n] = t.requires_grad_(n != "g_gamma")
        else:
            out[n] = t
    return out


def check_backward(name, ker, ref, dtype=torch.float32, strided=True, backward=BACKWARD):
    ker = grad_leaves(fused(ker) if strided else ker, dtype)
    if strided and dtype == torch.float32:
        assert not ker["q"].is_contiguous() and launch.in_place(ker["q"])
    ref = {n: (t.detach().clone().requires_grad_(n != "g_gamma") if t.is_floating_point() else t)
           for n, t in ref.items()}
    o, state = attention(spec_of(name), **ref, output_final_state=True)
    do, dht = incoming(o, state)
    loss(o, state, do, dht).backward()
    want = {n: t.grad for n, t in ref.items() if isinstance(t, torch.Tensor) and t.requires_grad}
    o, state = op_of(name, backward=backward)(**ker, output_final_state=True)
    loss(o, state, do, dht).backward()
    got = {n: t.grad for n, t in ker.items() if isinstance(t, torch.Tensor) and t.requires_grad}
    for n, t in got.items():  # contiguous, in the input's shape and dtype
        assert t.shape == ker[n].shape and t.dtype == ker[n].dtype and t.is_contiguous(), n
    assert_grads_close(got, want, tol(dtype))


@pytest.mark.parametrize("name, dtype, B", [("mamba2", torch.float32, 2), ("sla_retnet", torch.float32, 2),
                                           ("sla_retnet", torch.float16, 2), ("gla", torch.float16, 1)],
                         ids=["mamba2-fp32", "sla_retnet-fp32", "sla_retnet-fp16", "gla-fp16"])
def test_backward_gva_strided(name, dtype, B):
    # every gradient (q, k, v, g, read logits, norm weight, initial state) with G = 2, views of fused projections
    ker, ref = case(name, B, 21, seed=6)
    check_backward(name, ker, ref, dtype)


@pytest.mark.parametrize("name, seqlens", [("sla_mamba2", [9, 30, 1]), ("sla_gla", [5, 17])])
def test_backward_gva_strided_varlen(name, seqlens):
    ker, ref = case(name, 1, None, seqlens=seqlens, seed=7)
    check_backward(name, ker, ref)


@pytest.mark.parametrize("name", ["sla_retnet_both", "sla_gla_write_l2"])
def test_backward_gva_gates_in_the_epilogue(name):
    # bwd_dkv with G = 2: the write gate's a_w summed over V blocks (dkv_values_blocked), the read gate, the qk L2
    # norm's backward after the group's dq, dk sums
    ker, ref = case(name, 1, 21, seed=9)
    # (the qk L2 norm takes whole rows: block_k = K)
    check_backward(name, ker, ref, backward=BACKWARD[:1] + BACKWARD[2:] if "l2" in name else BACKWARD)


def test_backward_gva_contiguous_write_gate():
    # the kernels without an epilogue, a write gate over the HV heads, contiguous inputs
    ker, ref = case("sla_mamba2_write", 1, 21, seed=8)
    check_backward("sla_mamba2_write", ker, ref, strided=False)


KERNELS = ("chunk_cumsum", "bwd_states", "bwd_output_dq", "bwd_dh", "bwd_dqk", "bwd_dv", "bwd_dkv",
           "chunk_rev_cumsum", "bwd_gate_finish")


@pytest.mark.parametrize("name", ["mamba2", "sla_mamba2"])
def test_backward_gva_launches_and_host_ops(name, monkeypatch):
    """Grouped heads add no launch and no host arithmetic: the group's shares are summed in the kernels."""
    monkeypatch.setenv("SLAGEN_POISON_OUTPUTS", "0")  # the tests' NaN fill of new outputs is a host op
    fn = op_of(name, backward=BACKWARD).backward_fn
    names = fn.__globals__
    counts = {}
    for value_heads in (H, HV):
        ker = fused(case(name, 1, 21, value_heads=value_heads)[0])
        kernels = {n: NoLaunch(names[n]) for n in KERNELS if n in names}
        for n, stand_in in kernels.items():
            monkeypatch.setitem(names, n, stand_in)
        do, dht = torch.randn_like(ker["v"]), torch.randn_like(ker["initial_state"])
        with HostOps() as host:
            fn(**ker, scale=0.5, do=do, dht=dht)
        assert host.ops == [], value_heads
        counts[value_heads] = {n: k.count for n, k in kernels.items() if k.count}
        for n, k in kernels.items():
            monkeypatch.setitem(names, n, k.kernel)
    assert counts[H] == counts[HV] and counts[H]


def test_other_layouts_are_copied_once():
    # a transposed q ([B, H, T, K] memory) cannot be read through one row stride: one copy, same result
    ref = make_inputs(spec_of("mamba2"), 2, 9, H, seed=4, with_initial_state=True)
    ker = {n: (t.float() if t.is_floating_point() else t) for n, t in ref.items()}
    q_t = ker["q"].transpose(1, 2).contiguous().transpose(1, 2)
    assert not launch.in_place(q_t)
    want = op_of("mamba2")(**ker, output_final_state=True)
    got = op_of("mamba2")(**dict(ker, q=q_t), output_final_state=True)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])


def test_strided_gradients_come_back_in_the_input_shape():
    ker, _ = case("mamba2", 1, 12)  # grouped heads: q, k 2 x 32, v 4 x 16 wide
    x = fused({n: t.detach() for n, t in ker.items()})
    proj = x["q"]._base
    proj.requires_grad_(True)
    q, k, v = (proj[..., a:b].view(x[n].shape) for n, (a, b) in zip(
        ("q", "k", "v"), ((0, 64), (64, 128), (128, 192))))
    o, _ = op_of("mamba2")(q, k, v, g=x["g"], initial_state=x["initial_state"])
    o.float().pow(2).sum().backward()
    want = proj.detach().clone().requires_grad_(True)
    o_ref, _ = attention(spec_of("mamba2"), *(want[..., a:b].reshape(x[n].shape) for n, (a, b) in zip(
        ("q", "k", "v"), ((0, 64), (64, 128), (128, 192)))), g=x["g"], initial_state=x["initial_state"])
    o_ref.float().pow(2).sum().backward()
    assert proj.grad.shape == proj.shape and proj.grad.is_contiguous()
    torch.testing.assert_close(proj.grad, want.grad, atol=2e-3, rtol=2e-3)


def test_views_are_read_in_place():
    from slagen.runtime import layout

    for name in ("sla_gdn", "mamba2", "zeros_gla"):  # g, beta as views too
        x = fused(case(name, 1, 6)[0]) if name != "zeros_gla" else fused(
            {n: t.float() for n, t in make_inputs(spec_of(name), 1, 6, H, value_heads=HV).items()})
        kwargs = {n: x[n] for n in ("g", "beta") if n in x}
        q, k, v = layout.readable(x["q"], x["k"], x["v"], kwargs)
        assert q is x["q"] and k is x["k"] and v is x["v"] and all(kwargs[n] is x[n] for n in kwargs), name
