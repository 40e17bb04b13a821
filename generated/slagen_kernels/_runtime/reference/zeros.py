"""ZeroS zero-sum linear attention (MATH.md §3), with the experimental decayed forms.

`o_t = Σ_{i≤t} r_{t,i} (q̂_t · k̂_i) v_i` with zero-sum weights `r`; factorised as
`o_t = q̂_t (α_t F_t + β_t G_t + γ_t Hs_t)`. Two decays may act (they coincide for "consistent"):
- the *state* decay `lg` on F, G, Hs (fixed/scalar/vector, `zero_sum_decay` "state" or "consistent");
- the *measure* decay `lg_measure` on the zero-sum statistics Ẽ, P, n ("consistent" only; n is then the
  decayed count Z and P the decayed sum P̃).
State (conventions.md): `kv [N, H, 3, K, V]` = (F̃ = e^{-m}F, G, Hs) and `stats [N, H, 4]` = (Ẽ = e^{-m}E, P, m, n).
A state with `n = 0` is empty: its `m` is read as -inf (so an all-zero state is a valid empty state).
The max `m` is kept inside autograd (not detached): gradients of the carried (F̃, Ẽ, m) are then exact.
"""

from __future__ import annotations

import torch

from .prepare import Streams
from .tiles import causal_decay, causal_mask, cumulative, decayed_scores_chunk, decayed_scores_naive


def empty_state(N: int, H: int, K: int, V: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    kv = torch.zeros(N, H, 3, K, V, dtype=dtype, device=device)
    stats = torch.zeros(N, H, 4, dtype=dtype, device=device)
    stats[..., 2] = float("-inf")
    return kv, stats


def _unpack(state):
    kv, stats = state
    F, G, Hs = kv.unbind(2)
    E, P, m, n = stats.unbind(-1)
    m = torch.where(n == 0, float("-inf"), m)
    return F, G, Hs, E, P, m, n


def _pack(F, G, Hs, E, P, m, n):
    return torch.stack((F, G, Hs), dim=2), torch.stack((E, P, m, n), dim=-1)


def _measure_cumulative(x: Streams) -> torch.Tensor:
    """Cumulative log decay of the zero-sum measure, `[N, H, T]` (zeros when undecayed)."""
    return cumulative(x.lg_measure, x.q)[..., 0]


def _coefficients(sig1, sigh, E, P, n):
    """Row coefficients of the factorised form: α (of F̃, relative to the same max as E), β, γ."""
    alpha = sigh / E
    beta = (sig1 - sigh) / n
    gamma = -(beta * P + sigh) / n
    return alpha, beta, gamma


def zero_sum_rows(s, sig1, sigh, bm, state):
    """Explicit weights `r [N, H, T, T]` (measure decay folded in) and per-row statistics.

    `r_{t,i} = σ¹(s_i - s̄_t) w_{ti}/n_t + σʰ ε_{t,i}`, `ε_{t,i} = p_{t,i} - w_{ti}/n_t - (s_i - s̄_t) w_{ti}/n_t`,
    where `w_{ti} = e^{bm_t - bm_i}` (1 undecayed), `p` the (decayed) softmax over the prefix including the
    carried state, `n_t`, `s̄_t = P_t / n_t` the (decayed) count and mean. Returns
    `(r, (α̃ for the carried F̃, β, γ), (E rel. M, P, M, n))` with `M_t` the running max.
    """
    _, _, _, E0, P0, m0, n0 = _unpack(state)
    mask = causal_mask(s.shape[-1], s.device)
    w = causal_decay(bm)                    # [N, H, T, T]
    carried = bm.exp()                      # decay of the carried statistics up to row t
    M = torch.maximum(m0[..., None], torch.cummax(s, dim=-1).values)
    p_num = torch.where(mask, s[..., None, :] - M[..., :, None], float("-inf")).exp() * w
    rescale0 = (m0[..., None] - M).exp()
    E = carried * E0[..., None] * rescale0 + p_num.sum(-1)
    P = carried * P0[..., None] + (w * s[..., None, :]).sum(-1)
    n = carried * n0[..., None] + w.sum(-1)
    mean = (P / n)[..., None]
    dev = w * (s[..., None, :] - mean) / n[..., None]
    eps = p_num / E[..., None] - w / n[..., None] - dev
    r = sig1[..., None] * dev + sigh[..., None] * eps
    alpha, beta, gamma = _coefficients(sig1, sigh, E, P, n)
    return r, (alpha * rescale0, beta, gamma), (E, P, M, n)


def zeros_naive(x: Streams, state):
    """Materialised zero-sum weights times the decayed `q̂ k̂ᵀ` tile, plus the carried states' read-out."""
    F0, G0, Hs0, _, _, m0, _ = _unpack(state)
    bm = _measure_cumulative(x)
    b = cumulative(x.lg, x.q)
    r, (alpha0, beta, gamma), (E, P, M, n) = zero_sum_rows(x.s, x.sig1, x.sigh, bm, state)
    tile = decayed_scores_naive(x.q, x.k, b - bm[..., None])  # the measure decay already sits in r
    qd = x.q * b.exp()
    o = (r * tile) @ x.v + alpha0[..., None] * (qd @ F0) + beta[..., None] * (qd @ G0) + gamma[..., None] * (qd @ Hs0)
    # final state: sums over the whole sequence relative to the last running max
    m_T = M[..., -1]
    b_last = b[:, :, -1:]
    kd = x.k * (b_last - b).exp()
    e = (x.s - m_T[..., None]).exp()
    decay = b_last.transpose(-1, -2).exp()
    F = decay * F0 * (m0 - m_T).exp()[..., None, None] + (kd * e[..., None]).transpose(-1, -2) @ x.v
    G = decay * G0 + (kd * x.s[..., None]).transpose(-1, -2) @ x.v
    Hs = decay * Hs0 + kd.transpose(-1, -2) @ x.v
    return o, _pack(F, G, Hs, E[..., -1], P[..., -1], m_T, n[..., -1])


def zeros_recurrent(x: Streams, state):
    """Per step: online-softmax rescaling of F̃, Ẽ by the running max; decays; read with α, β, γ."""
    F, G, Hs, E, P, m, n = _unpack(state)
    outs = []
    for t in range(x.seqlen):
        a = 1.0 if x.lg is None else x.lg[:, :, t, :, None].exp()                # state decay [N, H, Kd, 1]
        a_m = 1.0 if x.lg_measure is None else x.lg_measure[:, :, t, 0].exp()    # measure decay [N, H]
        s_t, k_t, v_t = x.s[:, :, t], x.k[:, :, t], x.v[:, :, t]
        m_new = torch.maximum(m, s_t)
        rescale, e = (m - m_new).exp(), (s_t - m_new).exp()
        kv = k_t[..., None] * v_t[:, :, None, :]
        F = F * a * rescale[..., None, None] + e[..., None, None] * kv
        G = G * a + s_t[..., None, None] * kv
        Hs = Hs * a + kv
        E, P, n, m = E * a_m * rescale + e, P * a_m + s_t, n * a_m + 1, m_new
        alpha, beta, gamma = _coefficients(x.sig1[:, :, t], x.sigh[:, :, t], E, P, n)
        mix = alpha[..., None, None] * F + beta[..., None, None] * G + gamma[..., None, None] * Hs
        outs.append((x.q[:, :, t, None, :] @ mix)[:, :, 0])
    return torch.stack(outs, dim=2), _pack(F, G, Hs, E, P, m, n)


def zeros_chunked(x: Streams, state, chunk_size: int):
    """One decayed `q̂ k̂ᵀ` tile per chunk serves the three states (per-column scalars e^{s-m_c}, s, 1;
    per-row α, β, γ); a chunk-level reference max `m_c` keeps every exponent non-positive."""
    F, G, Hs, E, P, m, n = _unpack(state)
    outs = []
    for c0 in range(0, x.seqlen, chunk_size):
        c = x.select(c0, min(c0 + chunk_size, x.seqlen))
        b = cumulative(c.lg, c.q)
        bm = _measure_cumulative(c)
        m_c = torch.maximum(m, c.s.amax(-1))
        rescale, e = (m - m_c).exp(), (c.s - m_c[..., None]).exp()
        w, carried = causal_decay(bm), bm.exp()
        E_rows = carried * (E * rescale)[..., None] + (w @ e[..., None])[..., 0]
        P_rows = carried * P[..., None] + (w @ c.s[..., None])[..., 0]
        n_rows = carried * n[..., None] + w.sum(-1)
        alpha, beta, gamma = (z[..., None] for z in _coefficients(c.sig1, c.sigh, E_rows, P_rows, n_rows))
        tile = decayed_scores_chunk(c.q, c.k, b)
        qd = c.q * b.exp()
        intra = alpha * (tile @ (e[..., None] * c.v)) + beta * (tile @ (c.s[..., None] * c.v)) + gamma * (tile @ c.v)
        inter = alpha * (qd @ F) * rescale[..., None, None] + beta * (qd @ G) + gamma * (qd @ Hs)
        outs.append(intra + inter)
        b_last = b[:, :, -1:]
        kd = c.k * (b_last - b).exp()
        decay = b_last.transpose(-1, -2).exp()
        F = decay * F * rescale[..., None, None] + (kd * e[..., None]).transpose(-1, -2) @ c.v
        G = decay * G + (kd * c.s[..., None]).transpose(-1, -2) @ c.v
        Hs = decay * Hs + kd.transpose(-1, -2) @ c.v
        E, P, n, m = E_rows[..., -1], P_rows[..., -1], n_rows[..., -1], m_c
    return torch.cat(outs, dim=2), _pack(F, G, Hs, E, P, m, n)
