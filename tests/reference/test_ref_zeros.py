"""ZeroS properties (MATH.md §3-4): zero-sum rows, o_1 = 0, constant logits, shift invariance,
linearity in s without the residual gate, c·(v1 - v2), and the 3K-key linear attention equivalence."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from refcases import BUILTINS, ZEROS, assert_close
from slagen.reference import attention, make_inputs, zero_sum_weights
from slagen.spec import VariantSpec

METHODS = ("naive", "recurrent", "chunked")
EARLY_ATOL = 1e-12  # early positions cancel: compare them with an absolute tolerance


@pytest.mark.parametrize("name", sorted(ZEROS))
def test_weight_rows_sum_to_zero(name):
    spec = ZEROS[name]
    x = make_inputs(spec, 2, 40, 3, seed=31)
    r = zero_sum_weights(spec, x["zs_logits"], x["zs_gate1"], x["zs_gateh"], g=x.get("g"), g_gamma=x.get("g_gamma"))
    assert r.shape == (2, 3, 40, 40)
    assert torch.count_nonzero(r.triu(1)) == 0  # causal
    assert_close(r.sum(-1), torch.zeros(2, 3, 40, dtype=torch.float64), tol=1e-13)
    assert r.abs().amax(-1)[..., 1:].min() > 1e-6  # and they are not trivially zero


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", sorted(ZEROS))
def test_first_output_is_zero(name, method):
    spec = ZEROS[name]
    o = attention(spec, **make_inputs(spec, 2, 20, 3, seed=32), method=method)[0]
    assert o[:, 0].abs().max() < EARLY_ATOL
    assert o[:, 1:].abs().amax(-1).min() > 0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", sorted(ZEROS))
def test_constant_logits_give_zero_output(name, method):
    spec = dataclasses.replace(ZEROS[name], output_norm="none")  # RMSNorm of 0 would amplify rounding
    x = {n: t for n, t in make_inputs(spec, 2, 40, 3, seed=33).items() if n != "norm_weight"}
    x["zs_logits"] = torch.full_like(x["zs_logits"], 1.7)
    o = attention(spec, **x, method=method, chunk_size=16)[0]
    assert o.abs().max() < EARLY_ATOL


@pytest.mark.parametrize("shift", [50.0, 500.0, -500.0])
@pytest.mark.parametrize("name", sorted(ZEROS))
def test_shifting_logits_changes_nothing(name, shift):
    spec = ZEROS[name]
    x = make_inputs(spec, 2, 40, 3, seed=34)
    ref = attention(spec, **x)[0]
    shifted = dict(x, zs_logits=x["zs_logits"] + shift)
    for method in METHODS:
        o = attention(spec, **shifted, method=method, chunk_size=16)[0]
        assert torch.isfinite(o).all()
        # s enters β·G and γ·Hs with |s| ~ 500 and cancels: allow for that cancellation
        assert_close(o, ref, tol=1e-10 * (1 + abs(shift)))


@pytest.mark.parametrize("name", sorted(ZEROS))
def test_shifting_logits_fp32_no_nan(name):
    spec = ZEROS[name]
    x = make_inputs(spec, 1, 40, 2, seed=35, dtype=torch.float32)
    ref = attention(spec, **x)[0]
    for shift in (50.0, 500.0):
        for method in METHODS:
            o = attention(spec, **dict(x, zs_logits=x["zs_logits"] + shift), method=method, chunk_size=16)[0]
            assert torch.isfinite(o).all()
            torch.testing.assert_close(o, ref, atol=2e-3 * (1 + shift / 50), rtol=0)


@pytest.mark.parametrize("name", sorted(ZEROS))
def test_linear_in_logits_without_residual_gate(name):
    spec = dataclasses.replace(ZEROS[name], output_norm="none", head_gate="none", gate_scale="none")
    x = {n: t for n, t in make_inputs(spec, 2, 30, 3, seed=36).items() if n not in ("norm_weight", "read_logits")}
    x["zs_gateh"] = torch.zeros_like(x["zs_gateh"])
    s1 = x["zs_logits"]
    s2 = torch.randn(s1.shape, generator=torch.Generator().manual_seed(37), dtype=torch.float64)
    for method in METHODS:
        def run(s):
            return attention(spec, **dict(x, zs_logits=s), method=method, chunk_size=16)[0]
        assert_close(run(2.5 * s1 - 0.5 * s2), 2.5 * run(s1) - 0.5 * run(s2))


def test_one_layer_outputs_a_difference_of_values():
    """With q̂_2 = k̂_1 = k̂_2 the output at t=2 is c·(v_1 - v_2), c = r_{2,1} = -r_{2,2} != 0."""
    spec = BUILTINS["zeros"]
    x = make_inputs(spec, 1, 2, 1, seed=38)
    u = torch.randn(16, generator=torch.Generator().manual_seed(39), dtype=torch.float64)
    x["q"] = u.expand(1, 2, 1, 16).clone()
    x["k"] = (3.0 * u).expand(1, 2, 1, 16).clone()  # any positive multiple: qk_l2norm makes them unit
    s, s1, sh = x["zs_logits"][0, :, 0], x["zs_gate1"][0, 1, 0], x["zs_gateh"][0, 1, 0]
    dev = (s[0] - s[1]) / 2                             # s_1 - s̄_2
    eps = torch.softmax(s, 0)[0] - 0.5 - dev / 2        # ε_{2,1}
    c = s1 * dev / 2 + sh * eps
    cos = (u @ u) / (u @ u + 1e-6) ** 0.5 / ((9 * (u @ u) + 1e-6) ** 0.5 / 3)  # q̂·k̂, 1 up to the l2norm eps
    v1, v2 = x["v"][0, 0, 0], x["v"][0, 1, 0]
    for method in METHODS:
        o = attention(spec, **x, method=method)[0][0, 1, 0]
        assert_close(o, c * cos * (v1 - v2))
    assert abs(c) > 1e-3


@pytest.mark.parametrize("with_state", [False, True])
def test_equals_linear_attention_with_key_dim_3k(with_state):
    """q̃ = [α q̂, β q̂, γ q̂], k̃ = [e^{s-M} k̂, s k̂, k̂]; α carries the max M (here the global one)."""
    spec = BUILTINS["zeros"]
    B, T, H = 2, 30, 3
    x = make_inputs(spec, B, T, H, seed=40, with_initial_state=with_state)
    unit = lambda t: t / torch.sqrt((t * t).sum(-1, keepdim=True) + 1e-6)  # noqa: E731
    q, k, s, s1, sh = unit(x["q"]), unit(x["k"]), x["zs_logits"], x["zs_gate1"], x["zs_gateh"]
    if with_state:
        kv, stats = x["initial_state"]
        E0, P0, m0, n0 = stats.unbind(-1)                           # [B, H]
        M = torch.maximum(s.amax(1), m0)                            # [B, H]
        lin_state = torch.cat([kv[:, :, 0] * (m0 - M).exp()[..., None, None], kv[:, :, 1], kv[:, :, 2]], dim=2)
    else:
        E0 = P0 = n0 = torch.zeros(B, H, dtype=torch.float64)
        M, lin_state = s.amax(1), None
    e = (s - M[:, None]).exp()
    E = E0[:, None] * (m0 - M).exp()[:, None] + e.cumsum(1) if with_state else e.cumsum(1)
    P = P0[:, None] + s.cumsum(1)
    n = n0[:, None] + torch.arange(1, T + 1, dtype=torch.float64)[None, :, None]
    alpha, beta = sh / E, (s1 - sh) / n
    gamma = -(beta * P + sh) / n
    q3 = torch.cat([alpha[..., None] * q, beta[..., None] * q, gamma[..., None] * q], dim=-1)
    k3 = torch.cat([e[..., None] * k, s[..., None] * k, k], dim=-1)
    linear3 = VariantSpec("linear3k", decay="none", head_dim_k=48, head_dim_v=24)
    want = attention(linear3, q3, k3, x["v"], scale=1.0, initial_state=lin_state)[0]
    for method in METHODS:
        assert_close(attention(spec, **x, method=method, chunk_size=16)[0], want)
