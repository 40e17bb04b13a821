"""Left padding the way fla handles it: drop the padded tokens (one packed varlen batch), run, put them back.

`attention_mask` is fla's `[B, S]` 0/1 matrix (0 = padding) covering at least the `q_len` newest tokens.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def check_attention_mask(attention_mask: Optional[torch.Tensor], batch: int, q_len: int) -> None:
    if attention_mask is None:
        return
    if attention_mask.dim() != 2 or attention_mask.shape[0] != batch or attention_mask.shape[1] < q_len:
        raise ValueError(f"attention_mask: expected a 0/1 padding matrix [batch_size, seq_len] = [{batch}, >= {q_len}]"
                         f" (0 marks padding), got shape {list(attention_mask.shape)}")


def unpad(x: torch.Tensor, cu_seqlens: Optional[torch.Tensor], attention_mask: Optional[torch.Tensor],
          q_len: int) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """`(x [1, tokens, ...], indices, cu_seqlens)` keeping the unmasked tokens of the `q_len` newest; explicit
    `cu_seqlens` win (then nothing is unpadded, as in fla)."""
    if cu_seqlens is not None or attention_mask is None:
        return x, None, cu_seqlens
    mask = attention_mask[:, -q_len:].bool()
    indices = torch.nonzero(mask.flatten(), as_tuple=False).flatten()
    cu_seqlens = F.pad(mask.sum(-1).cumsum(0), (1, 0)).to(torch.int64)
    return x.flatten(0, 1)[indices].unsqueeze(0), indices, cu_seqlens


def repad(y: torch.Tensor, indices: Optional[torch.Tensor], batch: int, q_len: int) -> torch.Tensor:
    """Inverse of `unpad`: padded positions get zeros."""
    if indices is None:
        return y
    out = y.new_zeros(batch * q_len, *y.shape[2:])
    out = out.index_put((indices,), y[0])
    return out.view(batch, q_len, *y.shape[2:])


def sequence_index(cu_seqlens: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For packed tokens: `(sequence of each token [total], 0-based position inside its sequence [total])`."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    seq = torch.repeat_interleave(torch.arange(lengths.numel(), device=cu_seqlens.device), lengths, output_size=total)
    local = torch.arange(total, device=cu_seqlens.device) - cu_seqlens[:-1].long()[seq]
    return seq, local


def token_positions(batch: int, q_len: int, cu_seqlens: Optional[torch.Tensor], offsets: torch.Tensor,
                    device: torch.device) -> torch.Tensor:
    """0-based position of each token in its own sequence, continuing from `offsets` (tokens already seen per
    sequence, `[N]`): shape `[B, T]` (`[1, tokens]` when packed)."""
    offsets = offsets.to(device=device, dtype=torch.long)
    if cu_seqlens is None:
        return offsets.view(-1, 1).expand(batch, 1) + torch.arange(q_len, device=device).view(1, -1)
    seq, local = sequence_index(cu_seqlens, q_len)
    return (offsets[seq] + local).view(1, -1)


def segment_cumsum(x: torch.Tensor, cu_seqlens: Optional[torch.Tensor]) -> torch.Tensor:
    """Cumulative sum over time (dim 1 of `[B, T, ...]`) restarting at each packed sequence."""
    total = x.cumsum(1)
    if cu_seqlens is None:
        return total
    seq, _ = sequence_index(cu_seqlens, x.shape[1])
    starts = cu_seqlens[:-1].long()[seq]  # first token of each token's sequence
    before = torch.where((starts > 0).view(1, -1, *[1] * (x.dim() - 2)),
                         total[:, (starts - 1).clamp(min=0)], torch.zeros_like(total))
    return total - before
