"""Grouped value heads (fla's GVA) in the reference: q, k carry H heads, v, gates, logits and states HV = G*H;
value head j reads q/k head j // G."""

from __future__ import annotations

import pytest
import torch

from refcases import ALL, BUILTINS, assert_close, flat
from slagen.reference import attention, make_inputs

H, HV = 2, 4


def _repeated(inputs):
    """The same call with q and k materialised per value head (the definition of GVA)."""
    out = dict(inputs)
    for name in ("q", "k"):
        out[name] = inputs[name].repeat_interleave(HV // H, dim=2)
    return out


@pytest.mark.parametrize("name", sorted(ALL))
def test_gva_is_repeated_qk(name):
    spec = ALL[name]
    x = make_inputs(spec, 2, 19, H, value_heads=HV, seed=3, with_initial_state=True)
    assert x["q"].shape[2] == H and x["v"].shape[2] == HV
    want_o, want_s = attention(spec, **_repeated(x), output_final_state=True, method="recurrent")
    for method in ("naive", "chunked"):
        o, s = attention(spec, **x, output_final_state=True, method=method, chunk_size=8)
        assert_close(o, want_o)
        assert_close(flat(s), flat(want_s))


@pytest.mark.parametrize("name", ["gla", "gdn", "retnet"])
def test_gva_heads_are_independent_without_gates(name):
    # without head gates each value head j is its own single-head problem on q/k head j // G
    spec = BUILTINS[name]
    x = make_inputs(spec, 1, 23, H, value_heads=HV, seed=4, with_initial_state=True)
    o, s = attention(spec, **x, output_final_state=True)
    for j in range(HV):
        one = {n: (t[:, :, j // (HV // H)] if n in ("q", "k") else t[:, :, j]).unsqueeze(2)
               for n, t in x.items() if n not in ("g_gamma", "initial_state", "norm_weight")}
        extra = {"g_gamma": x["g_gamma"][j:j + 1]} if "g_gamma" in x else {}
        o_j, s_j = attention(spec, **one, **extra, initial_state=x["initial_state"][:, j:j + 1],
                             output_final_state=True)
        assert_close(o_j[:, :, 0], o[:, :, j])
        assert_close(s_j[:, 0], s[:, j])


def test_gva_varlen():
    spec = BUILTINS["sla_gdn"]
    x = make_inputs(spec, 1, None, H, value_heads=HV, seqlens=[5, 9, 3], seed=5, with_initial_state=True)
    o, s = attention(spec, **x, output_final_state=True)
    want_o, want_s = attention(spec, **_repeated(x), output_final_state=True)
    assert_close(o, want_o)
    assert_close(s, want_s)
    assert s.shape == (3, HV, spec.head_dim_k, spec.head_dim_v)


def test_gva_refuses_value_heads_not_a_multiple():
    spec = BUILTINS["gla"]
    x = make_inputs(spec, 1, 4, 2, value_heads=4, seed=6)
    x["v"] = torch.randn(1, 4, 3, spec.head_dim_v, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^v: expected shape \[1, 4, 2, 24\] \(\[B, T, HV, V\]: HV a multiple of"):
        attention(spec, **x)
    with pytest.raises(ValueError, match="^value_heads: expected None or a multiple of heads=2, got 3"):
        make_inputs(spec, 1, 4, 2, value_heads=3)
