"""Gated delta rule: `S_t = e^{g_t}(I - β_t k_tᵀ k_t) S_{t-1} + β_t k_tᵀ v_t`, `o_t = q_t S_t`.

The naive method of this family *is* the recurrence (no closed-form weight matrix). The chunked form
is the WY / UT representation of fla's `chunk_gated_delta_rule`: inside a chunk with incoming state S and
cumulative log decay b, the corrected values `δ_i = β_i (v_i - e^{g_i} k_i S_{i-1})` solve
`(I + A) δ = βV - (β e^{b} K) S` with `A_{ij} = β_i (k_i·k_j) e^{b_i - b_j}` strictly lower, so
`δ = U - W S` with `W = (I + A)^{-1} (β e^{b} K)`, `U = (I + A)^{-1} (β V)`; then the chunk is plain
decayed linear attention on `δ`.
"""

from __future__ import annotations

import torch

from .tiles import causal_decay


def delta_recurrent(q, k, v, lg, beta, state):
    """`lg [N, H, T, 1]`, `beta [N, H, T]`, `state [N, H, K, V]` -> `(o [N, H, T, V], final_state)`."""
    S = state
    outs = []
    for t in range(q.shape[2]):
        S = S * lg[:, :, t, :, None].exp()
        k_t = k[:, :, t]
        delta = beta[:, :, t, None] * (v[:, :, t] - (k_t[:, :, None, :] @ S)[:, :, 0])
        S = S + k_t[..., None] * delta[:, :, None, :]
        outs.append((q[:, :, t, None, :] @ S)[:, :, 0])
    return torch.stack(outs, dim=2), S


def delta_chunked(q, k, v, lg, beta, state, chunk_size: int):
    """WY representation per chunk: triangular solve for W, U; state recurrence across chunks."""
    S = state
    outs = []
    for c0 in range(0, q.shape[2], chunk_size):
        c1 = min(c0 + chunk_size, q.shape[2])
        qc, kc, vc, bc = q[:, :, c0:c1], k[:, :, c0:c1], v[:, :, c0:c1], beta[:, :, c0:c1, None]
        b = lg[:, :, c0:c1, 0].cumsum(-1)  # [N, H, L], non-increasing
        L = c1 - c0
        A = bc * (kc @ kc.transpose(-1, -2)) * causal_decay(b, strict=True)
        eye_plus_a = A + torch.eye(L, dtype=A.dtype, device=A.device)
        W = torch.linalg.solve_triangular(eye_plus_a, bc * b[..., None].exp() * kc, upper=False, unitriangular=True)
        U = torch.linalg.solve_triangular(eye_plus_a, bc * vc, upper=False, unitriangular=True)
        delta = U - W @ S
        scores = (qc @ kc.transpose(-1, -2)) * causal_decay(b)
        outs.append((qc * b[..., None].exp()) @ S + scores @ delta)
        b_last = b[..., -1:]
        S = b_last[..., None].exp() * S + (kc * (b_last - b)[..., None].exp()).transpose(-1, -2) @ delta
    return torch.cat(outs, dim=2), S
