"""The reference against literal, loop-by-loop transcriptions of MATH.md (raw exp, explicit matrices).

These share no code with slagen.reference, so a mistake there cannot hide behind a shared helper.
"""

from __future__ import annotations

import dataclasses

import torch

from refcases import BUILTINS, EXTRA, K, assert_close
from slagen.reference import attention, make_inputs

B, T, H = 1, 12, 2


def _unit(x):
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-6)


def _literal_decay(q, k, v, decay_of, scale):
    """S_t = diag(a_t) S_{t-1} + k_tᵀ v_t with `a_t = decay_of(b, t, h)` a [K] vector."""
    o = torch.zeros_like(v)
    for b in range(B):
        for h in range(H):
            S = torch.zeros(q.shape[-1], v.shape[-1], dtype=q.dtype)
            for t in range(T):
                S = torch.diag(decay_of(b, t, h)) @ S + torch.outer(k[b, t, h], v[b, t, h])
                o[b, t, h] = q[b, t, h] @ S * scale
    return o


def test_gla_literal():
    spec = BUILTINS["gla"]
    x = make_inputs(spec, B, T, H)
    want = _literal_decay(x["q"], x["k"], x["v"], lambda b, t, h: x["g"][b, t, h].exp(), spec.head_dim_k ** -0.5)
    assert_close(attention(spec, **x)[0], want)


def test_retnet_literal_with_default_gammas():
    spec = BUILTINS["retnet"]
    x = make_inputs(spec, B, T, H)
    gammas = [1 - 2 ** (-5 - h) for h in range(H)]
    ones = torch.ones(spec.head_dim_k, dtype=torch.float64)
    want = _literal_decay(x["q"], x["k"], x["v"], lambda b, t, h: ones * gammas[h], spec.head_dim_k ** -0.5)
    assert_close(attention(spec, **x)[0], want)


def test_gated_delta_literal():
    spec = BUILTINS["gdn"]
    x = make_inputs(spec, B, T, H)
    q, k, v, g, beta = _unit(x["q"]), _unit(x["k"]), x["v"], x["g"], x["beta"]
    Kd = spec.head_dim_k
    o = torch.zeros_like(v)
    for h in range(H):
        S = torch.zeros(Kd, spec.head_dim_v, dtype=torch.float64)
        for t in range(T):
            kt = k[0, t, h][None]  # row vector [1, K]
            S = g[0, t, h].exp() * (torch.eye(Kd, dtype=torch.float64) - beta[0, t, h] * kt.T @ kt) @ S \
                + beta[0, t, h] * kt.T @ v[0, t, h][None]
            o[0, t, h] = q[0, t, h] @ S * Kd ** -0.5
    for method in ("naive", "chunked"):
        assert_close(attention(spec, **x, method=method, chunk_size=4)[0], o)


def test_zeros_explicit_weights_literal():
    """r_{t,i} = σ¹(s_i - s̄_t)/t + σʰ ε_{t,i}, with ε from the softmax written out."""
    spec = BUILTINS["zeros"]
    x = make_inputs(spec, B, T, H)
    q, k, v, s, s1, sh = _unit(x["q"]), _unit(x["k"]), x["v"], x["zs_logits"], x["zs_gate1"], x["zs_gateh"]
    o = torch.zeros_like(v)
    for h in range(H):
        for t in range(T):
            n = t + 1
            prefix = s[0, :n, h]
            mean = prefix.mean()
            soft = prefix.exp() / prefix.exp().sum()
            for i in range(n):
                eps = soft[i] - 1 / n - (prefix[i] - mean) / n
                r = s1[0, t, h] * (prefix[i] - mean) / n + sh[0, t, h] * eps
                o[0, t, h] += r * (q[0, t, h] @ k[0, i, h]) * v[0, i, h]
    for method in ("naive", "recurrent", "chunked"):
        assert_close(attention(spec, **x, method=method, chunk_size=5)[0], o)


def _literal_zeros_decayed(x, decay_of, consistent: bool):
    """MATH.md §3 decayed forms, raw exponentials: states decayed by diag(a); the measure decayed by the
    scalar a only when `consistent` (then the count is Z and the sum P̃)."""
    q, k, v, s, s1, sh = (_unit(x["q"]), _unit(x["k"]), x["v"], x["zs_logits"], x["zs_gate1"], x["zs_gateh"])
    o = torch.zeros_like(v)
    Kd, Vd = q.shape[-1], v.shape[-1]
    for h in range(H):
        F, G, Hs = (torch.zeros(Kd, Vd, dtype=torch.float64) for _ in range(3))
        E = P = Z = torch.zeros((), dtype=torch.float64)
        for t in range(T):
            a = decay_of(t, h)
            a_m = a[0] if consistent else 1.0
            kv = torch.outer(k[0, t, h], v[0, t, h])
            st = s[0, t, h]
            F = torch.diag(a) @ F + st.exp() * kv
            G = torch.diag(a) @ G + st * kv
            Hs = torch.diag(a) @ Hs + kv
            E, P, Z = a_m * E + st.exp(), a_m * P + st, a_m * Z + 1
            alpha = sh[0, t, h] / E
            beta = (s1[0, t, h] - sh[0, t, h]) / Z
            gamma = -(beta * P + sh[0, t, h]) / Z
            o[0, t, h] = q[0, t, h] @ (alpha * F + beta * G + gamma * Hs)
    return o


def test_zeros_consistent_literal():
    spec = BUILTINS["zeros_mamba2"]
    x = make_inputs(spec, B, T, H)
    ones = torch.ones(spec.head_dim_k, dtype=torch.float64)
    want = _literal_zeros_decayed(x, lambda t, h: ones * x["g"][0, t, h].exp(), consistent=True)
    for method in ("naive", "recurrent", "chunked"):
        assert_close(attention(spec, **x, method=method, chunk_size=5)[0], want)


def test_zeros_state_decay_literal():
    for spec, decay_of in (
        (BUILTINS["zeros_gla"], lambda x: lambda t, h: x["g"][0, t, h].exp()),
        (EXTRA["zeros_retnet_state"], lambda x: lambda t, h: torch.full((K,), 1 - 2 ** (-5 - h), dtype=torch.float64)),
    ):
        x = make_inputs(spec, B, T, H)
        want = _literal_zeros_decayed(x, decay_of(x), consistent=False)
        for method in ("naive", "recurrent", "chunked"):
            assert_close(attention(spec, **x, method=method, chunk_size=5)[0], want)


def test_sla_epilogue_literal():
    """o' = π_{t,h} · H · RMSNorm(o·scale) · w, π = softmax over heads of z/τ (sla_mamba2: heads scaling)."""
    spec = BUILTINS["sla_mamba2"]
    x = make_inputs(spec, B, T, H)
    base = {n: t for n, t in x.items() if n not in ("read_logits", "norm_weight")}
    plain = dataclasses.replace(spec, head_gate="none", gate_scale="none", output_norm="none")
    o = attention(plain, **base)[0]
    normed = o / torch.sqrt(o.pow(2).mean(-1, keepdim=True) + spec.norm_eps) * x["norm_weight"]
    pi = torch.softmax(x["read_logits"] / spec.gate_temperature, dim=-1) * H
    assert_close(attention(spec, **x)[0], normed * pi[..., None])
