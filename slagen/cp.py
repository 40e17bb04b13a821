"""Context parallelism: one sequence (or packed batch) split across the ranks of a torch.distributed group.

    ctx = slagen.cp.context(group, cu_seqlens=None)   # global cu_seqlens of the packed batch, or None
    o, final = op(q, k, v, ..., cp_context=ctx)         # this rank's [1, T_local, ...] slices

Each rank passes its contiguous slice of the packed tokens (gates and logits sliced the same way) and gets
its slice of the output, and the final states of the sequences that end in its slice
(`ctx.ending_sequences(T_local)`). Ranks exchange states, never tokens. See `slagen/runtime/cp.py`.
"""

from __future__ import annotations

from .runtime.cp import CPContext, RankSlice, context

__all__ = ["CPContext", "RankSlice", "context"]
