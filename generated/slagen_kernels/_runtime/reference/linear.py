"""Decay families none / fixed / scalar / vector: `S_t = diag(e^{g_t}) S_{t-1} + k_tᵀ v_t`, `o_t = q_t S_t`.

Three independent computations of the same function (MATH.md §1). Inputs are per-head streams
`[N, H, T, D]` after the prologue; `lg` is the per-step log decay `[N, H, T, 1 or K]` or None;
`state` is `[N, H, K, V]`. Each returns `(o [N, H, T, V], final_state)`, unscaled.
"""

from __future__ import annotations

import torch

from .tiles import cumulative, decayed_scores_chunk, decayed_scores_naive


def _state_decay(b_last: torch.Tensor) -> torch.Tensor:
    """`[N, H, 1, Kd]` cumulative log decay -> multiplier `[N, H, Kd, 1]` for a `[K, V]` state."""
    return b_last.transpose(-1, -2).exp()


def linear_naive(q, k, v, lg, state):
    """Materialised `(QKᵀ ⊙ D ⊙ M) V` plus the decayed read-out of the initial state."""
    b = cumulative(lg, q)
    o = decayed_scores_naive(q, k, b) @ v + (q * b.exp()) @ state
    b_last = b[:, :, -1:]
    final = _state_decay(b_last) * state + (k * (b_last - b).exp()).transpose(-1, -2) @ v
    return o, final


def linear_recurrent(q, k, v, lg, state):
    """One step at a time: decay, write `k_tᵀ v_t`, read `q_t S_t`."""
    S = state
    outs = []
    for t in range(q.shape[2]):
        if lg is not None:
            S = S * lg[:, :, t, :, None].exp()
        S = S + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append((q[:, :, t, None, :] @ S)[:, :, 0])
    return torch.stack(outs, dim=2), S


def linear_chunked(q, k, v, lg, state, chunk_size: int):
    """Inter-chunk state + intra-chunk masked decayed attention, decays relative to the chunk start."""
    S = state
    outs = []
    for c0 in range(0, q.shape[2], chunk_size):
        c1 = min(c0 + chunk_size, q.shape[2])
        qc, kc, vc = q[:, :, c0:c1], k[:, :, c0:c1], v[:, :, c0:c1]
        b = cumulative(None if lg is None else lg[:, :, c0:c1], qc)  # all <= 0: exponents stay safe
        outs.append((qc * b.exp()) @ S + decayed_scores_chunk(qc, kc, b) @ vc)
        b_last = b[:, :, -1:]
        S = _state_decay(b_last) * S + (kc * (b_last - b).exp()).transpose(-1, -2) @ vc
    return torch.cat(outs, dim=2), S
