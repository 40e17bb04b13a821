"""SLA head gate (MATH.md §2): base model at H=1, simplex, shift invariance, uniform logits, placement."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from refcases import ALL, BUILTINS, EXTRA, assert_close
from slagen.reference import attention, make_inputs
from slagen.reference.prepare import head_gate_weights, rms_norm

GATED = {name: s for name, s in ALL.items() if s.head_gate != "none"}
GATE_INPUTS = ("read_logits", "write_logits")


def _base(spec):
    return dataclasses.replace(spec, head_gate="none", gate_scale="none", gate_temperature=1.0)


def _ungated(inputs):
    return {n: t for n, t in inputs.items() if n not in GATE_INPUTS}


@pytest.mark.parametrize("name", sorted(GATED))
def test_one_head_is_the_base_model_exactly(name):
    spec = GATED[name]
    x = make_inputs(spec, 2, 30, 1, seed=21, with_initial_state=True)
    for method in ("naive", "chunked"):
        o, s = attention(spec, **x, output_final_state=True, method=method, chunk_size=16)
        o_base, s_base = attention(_base(spec), **_ungated(x), output_final_state=True, method=method, chunk_size=16)
        assert torch.equal(o, o_base)
        assert torch.equal(s, s_base) if not isinstance(s, tuple) else all(map(torch.equal, s, s_base))


@pytest.mark.parametrize("name", sorted(GATED))
def test_gate_weights_are_a_simplex(name):
    spec = GATED[name]
    logits = 3 * torch.randn(2, 7, 5, generator=torch.Generator().manual_seed(22), dtype=torch.float64)
    pi = head_gate_weights(spec, logits, torch.float64)
    total = 5.0 if spec.gate_scale == "heads" else 1.0
    assert (pi >= 0).all()
    assert_close(pi.sum(-1), torch.full((2, 7), total, dtype=torch.float64))


@pytest.mark.parametrize("name", sorted(GATED))
def test_adding_a_constant_per_token_changes_nothing(name):
    spec = GATED[name]
    x = make_inputs(spec, 2, 30, 3, seed=23)
    o = attention(spec, **x)[0]
    shift = 40 * torch.randn(2, 30, 1, generator=torch.Generator().manual_seed(24), dtype=torch.float64)
    shifted = {n: (t + shift if n in GATE_INPUTS else t) for n, t in x.items()}
    assert_close(attention(spec, **shifted)[0], o)


@pytest.mark.parametrize("name", sorted(GATED))
def test_uniform_logits(name):
    spec = GATED[name]
    H = 4
    x = make_inputs(spec, 2, 30, H, seed=25)
    o = attention(spec, **{n: (torch.full_like(t, 0.3) if n in GATE_INPUTS else t) for n, t in x.items()})[0]
    o_base = attention(_base(spec), **_ungated(x))[0]
    if spec.gate_scale == "heads":
        assert_close(o, o_base)  # a uniform gate is the identity
        return
    if spec.uses_write_gate and (spec.decay == "delta" or spec.output_norm == "rms"):
        pytest.skip("a uniform write gate scales β (delta) or is cancelled by the norm: no 1/H law")
    factor = 1 / H ** (int(spec.uses_read_gate) + int(spec.uses_write_gate))
    assert_close(o, o_base * factor)


def test_temperature_divides_logits():
    spec = EXTRA["w_gla"]  # tau = 2
    x = make_inputs(spec, 1, 20, 3, seed=26)
    cooled = dataclasses.replace(spec, gate_temperature=1.0)
    o_cooled = attention(cooled, **dict(x, write_logits=x["write_logits"] / 2))[0]
    assert_close(attention(spec, **x)[0], o_cooled)


def test_both_is_write_then_read():
    spec = EXTRA["both_gdn"]
    x = make_inputs(spec, 2, 30, 3, seed=27)
    write_only = dataclasses.replace(spec, head_gate="write")
    o_write = attention(write_only, **{n: t for n, t in x.items() if n != "read_logits"})[0]
    pi_r = head_gate_weights(spec, x["read_logits"], torch.float64)
    assert_close(attention(spec, **x)[0], o_write * pi_r[..., None])


def test_read_gate_sits_after_the_norm():
    # before a per-head norm the gate would be cancelled: N(π o) == N(o); after it, it scales the output
    spec = BUILTINS["sla_retnet"]
    x = make_inputs(spec, 2, 30, 3, seed=28)
    o_base = attention(dataclasses.replace(spec, head_gate="none", gate_scale="none", output_norm="none"),
                       **{n: t for n, t in _ungated(x).items() if n != "norm_weight"})[0]
    pi = head_gate_weights(spec, x["read_logits"], torch.float64)[..., None]
    w, eps = x["norm_weight"], spec.norm_eps
    # (up to the norm's eps: the identity is exact as eps -> 0)
    assert_close(rms_norm(pi * o_base, w, 1e-30), rms_norm(o_base, w, 1e-30))
    o = attention(spec, **x)[0]
    assert_close(o, pi * rms_norm(o_base, w, eps))
    assert not torch.allclose(o, rms_norm(o_base, w, eps))


def test_write_gate_scales_keys_or_beta():
    for name, scaled in (("w_mamba2", "k"), ("w_gdn", "beta")):
        spec = EXTRA[name]
        x = make_inputs(spec, 1, 20, 3, seed=29)
        pi = head_gate_weights(spec, x["write_logits"], torch.float64)
        manual = _ungated(x)
        if scaled == "k":
            # the gate acts after qk_l2norm: normalise by hand, then scale, and switch the spec's l2norm off
            k = x["k"] / torch.sqrt((x["k"] ** 2).sum(-1, keepdim=True) + 1e-6)
            q = x["q"] / torch.sqrt((x["q"] ** 2).sum(-1, keepdim=True) + 1e-6)
            manual.update(k=k * pi[..., None], q=q)
            base = dataclasses.replace(_base(spec), qk_l2norm=False)
        else:
            manual["beta"] = x["beta"] * pi
            base = _base(spec)
        assert_close(attention(spec, **x)[0], attention(base, **manual)[0])
