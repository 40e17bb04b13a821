"""Decayed causal tiles shared by the families: `D_{ti} = e^{b_t - b_i}` on and below the diagonal.

Layout inside the reference is `[N, H, T, D]`; `b` is a cumulative log decay `[N, H, T, Kd]` with
`Kd = 1` (scalar decays) or `Kd = K` (per-channel). Masked entries go through `exp(-inf) = 0` *before*
any product, so a positive exponent above the diagonal can never overflow into `inf * 0 = NaN`.
"""

from __future__ import annotations

import torch

SUB_CHUNK = 16  # per-channel decays: the diagonal sub-blocks are materialised, the others use a reference row


def causal_mask(T: int, device, *, strict: bool = False) -> torch.Tensor:
    """`[T, T]` bool, True where key `i` is visible from query `t` (`i <= t`, or `i < t` when strict)."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril(-1 if strict else 0)


def causal_decay(b: torch.Tensor, *, strict: bool = False) -> torch.Tensor:
    """`exp(b_t - b_i)` under the causal mask, 0 elsewhere. `b [..., T]` -> `[..., T, T]`."""
    diff = b[..., :, None] - b[..., None, :]
    mask = causal_mask(b.shape[-1], b.device, strict=strict)
    return torch.where(mask, diff, float("-inf")).exp()


def decayed_scores_naive(q: torch.Tensor, k: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`A_{ti} = sum_c q_tc k_ic e^{b_tc - b_ic}` for `i <= t`, fully materialised (`[N, H, T, T, Kd]`)."""
    if b.shape[-1] == 1:
        return (q @ k.transpose(-1, -2)) * causal_decay(b[..., 0])
    diff = b[:, :, :, None, :] - b[:, :, None, :, :]
    mask = causal_mask(q.shape[2], q.device)[..., None]
    decay = torch.where(mask, diff, float("-inf")).exp()
    return torch.einsum("nhtc,nhic,nhtic->nhti", q, k, decay)


def decayed_scores_chunk(q: torch.Tensor, k: torch.Tensor, b: torch.Tensor, sub: int = SUB_CHUNK) -> torch.Tensor:
    """The same tile computed as a kernel would, for one chunk: per-channel decays via sub-chunks.

    For a key block left of the query block, the reference row is the key block's last row `r`:
    `q_t e^{b_t - b_r}` and `k_i e^{b_r - b_i}` both have non-positive exponents (b is non-increasing),
    so nothing overflows however strong the decay. Diagonal blocks are materialised per channel.
    """
    if b.shape[-1] == 1:
        return (q @ k.transpose(-1, -2)) * causal_decay(b[..., 0])
    L = q.shape[2]
    rows = []
    for t0 in range(0, L, sub):
        t1 = min(t0 + sub, L)
        qb, bq = q[:, :, t0:t1], b[:, :, t0:t1]
        blocks = []
        for i0 in range(0, t0, sub):
            ref = b[:, :, i0 + sub - 1: i0 + sub]  # [N, H, 1, K]
            q_rel = qb * (bq - ref).exp()
            k_rel = k[:, :, i0:i0 + sub] * (ref - b[:, :, i0:i0 + sub]).exp()
            blocks.append(q_rel @ k_rel.transpose(-1, -2))
        blocks.append(decayed_scores_naive(qb, k[:, :, t0:t1], bq))
        if t1 < L:
            blocks.append(q.new_zeros(*q.shape[:2], t1 - t0, L - t1))
        rows.append(torch.cat(blocks, dim=-1))
    return torch.cat(rows, dim=2)


def cumulative(lg: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Cumulative log decay along T (`[N, H, T, Kd]`); zeros `[N, H, T, 1]` when there is no decay."""
    if lg is None:
        return like.new_zeros(*like.shape[:3], 1)
    return lg.cumsum(dim=2)
