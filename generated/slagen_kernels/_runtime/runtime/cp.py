"""Context parallelism on torch.distributed: one packed token sequence split across the ranks of a group.

Each rank holds a contiguous slice `[1, T_local, heads, D]` of the packed tokens (rank r: tokens
`r·T_local .. (r+1)·T_local`) and calls the op with `cp_context=slagen.cp.context(group, cu_seqlens)`,
`cu_seqlens` being the global offsets of the packed batch (None: one sequence). What a slice needs from
the ranks before it is one state: that of the sequence crossing into it. A slice passes one on when a
sequence crosses out of it. So:
1. the rank runs the sequences that start inside its slice (the op as is) and, when its slice lies inside
   one sequence, the slice from an empty state; either gives the slice's map on the state it receives
   (`cp_state`: decay product and state from an empty start; ZeroS merges statistics);
2. the ranks all-gather these maps (one state and its decay factors per rank, never tokens) and each
   folds the maps of the ranks before it into its incoming state;
3. the rank runs the sequence crossing into its slice from that state.
Backward mirrors it: the local backward gives the gradient of the incoming state; the ranks all-gather
those and each one runs the fold backward (the transposed maps) to get the gradient of the state it passed
on, then backpropagates it through step 1.

All-gather rather than a ring pass (rank r waiting for r-1's state, stepping it, sending it on): the ring
puts W - 1 dependent hops, each a point-to-point latency plus a step, on the last rank's critical path, in
forward and again backward; the all-gather is one collective, and its extra bytes ((W - 1) states of ~1 MiB
received per rank) are tens of microseconds on NVLink. fla's delta-rule CP exchanges states the same way.
On CPU processes (gloo over loopback, few cores) the ring measures faster: there the all-gather's W·(W - 1)
copies are the cost (`benchmarks/context_parallel.py` prints both).

torch only (runtime leaf). Ops reach it through `CompiledOp.__call__(..., cp_context=ctx)` and the
generated packages' functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist

from ..spec import VariantSpec
from . import cp_state
from .autograd import TENSOR_INPUTS, join_state, state_parts

# Inputs with one row per token (sliced with the tokens); the rest (g_gamma, norm_weight) are per head.
TOKEN_INPUTS = ("q", "k", "v", "g", "beta", "read_logits", "write_logits", "zs_logits", "zs_gate1", "zs_gateh")


@dataclass(frozen=True)
class RankSlice:
    """One rank's part of the packed batch: `segments` are (global sequence id, local start, local end)."""

    segments: tuple[tuple[int, int, int], ...]
    continues: bool  # its first sequence started on an earlier rank
    passes_on: bool  # its last sequence goes on to a later rank

    @property
    def passthrough(self) -> bool:
        """The slice lies inside one sequence that crosses both its ends: its map composes."""
        return self.continues and self.passes_on and len(self.segments) == 1


@dataclass(frozen=True)
class CPContext:
    """The process group and the global sequence bounds of a context-parallel call (`context()` builds it)."""

    group: Any
    rank: int
    world_size: int
    bounds: Optional[tuple[tuple[int, int], ...]]  # global (start, end) per sequence; None: one sequence

    @property
    def num_sequences(self) -> int:
        return 1 if self.bounds is None else len(self.bounds)

    def slices(self, t_local: int) -> list[RankSlice]:
        """Every rank's slice for a call with `t_local` tokens per rank."""
        W = self.world_size
        if self.bounds is None:
            return [RankSlice(((0, 0, t_local),), r > 0, r < W - 1) for r in range(W)]
        total = self.bounds[-1][1]
        if total != W * t_local:
            raise ValueError(f"cu_seqlens: the context's sequences end at {total} tokens, expected world_size "
                             f"x T_local = {W} x {t_local} = {W * t_local} (equal slices on every rank)")
        out = []
        for r in range(W):
            lo, hi = r * t_local, (r + 1) * t_local
            segs = tuple((i, max(s, lo) - lo, min(e, hi) - lo) for i, (s, e) in enumerate(self.bounds)
                         if s < hi and e > lo)
            out.append(RankSlice(segs, self.bounds[segs[0][0]][0] < lo, self.bounds[segs[-1][0]][1] > hi))
        return out

    def ending_sequences(self, t_local: int) -> tuple[int, ...]:
        """Global ids of the sequences whose final states this rank returns (those ending in its slice), in
        the order of the rows of its `final_state`."""
        mine = self.slices(t_local)[self.rank]
        ids = [i for i, _, _ in mine.segments]
        return tuple(ids[:-1] if mine.passes_on else ids)


def context(group: Any = None, cu_seqlens: Optional[torch.Tensor] = None) -> CPContext:
    """The context of a context-parallel call: `group` (None: the default group) and the global
    `cu_seqlens` (int64 `[N + 1]`, from 0 to `world_size · T_local`, every sequence non-empty) of the packed
    batch, or None for one sequence of `world_size · T_local` tokens. Reads cu_seqlens to the host once."""
    if not dist.is_available() or not dist.is_initialized():
        raise ValueError("group: torch.distributed is not initialised; call torch.distributed.init_process_group "
                         "first")
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    if rank < 0:
        raise ValueError(f"group: this process (global rank {dist.get_rank()}) is not a member of the group")
    bounds = None
    if cu_seqlens is not None:
        if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dtype != torch.int64 or cu_seqlens.dim() != 1 \
                or cu_seqlens.numel() < 2:
            got = f"{cu_seqlens.dtype} {list(cu_seqlens.shape)}" if isinstance(cu_seqlens, torch.Tensor) \
                else type(cu_seqlens).__name__
            raise ValueError(f"cu_seqlens: expected None or an int64 tensor [N + 1] with N >= 1, got {got}")
        offsets = cu_seqlens.tolist()
        if offsets[0] != 0 or any(b >= e for b, e in zip(offsets[:-1], offsets[1:])):
            raise ValueError(f"cu_seqlens: expected strictly increasing offsets from 0 (no empty sequences under "
                             f"context parallelism), got {offsets}")
        if offsets[-1] % world:
            raise ValueError(f"cu_seqlens: expected a total length divisible by world_size={world} (equal slices), "
                             f"got {offsets[-1]}")
        bounds = tuple(zip(offsets[:-1], offsets[1:]))
    return CPContext(group, rank, world, bounds)


_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # the name torch 2.13 prefers


def gather(ctx: CPContext, parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """All-gather one flat buffer per rank: `[world_size, n]`."""
    flat = cp_state.pack(parts).contiguous()
    out = torch.empty(ctx.world_size * flat.numel(), dtype=flat.dtype, device=flat.device)
    _all_gather(out, flat, group=ctx.group)
    return out.view(ctx.world_size, flat.numel())


def incoming_state(spec: VariantSpec, slices: Sequence[RankSlice], rank: int,
                   maps: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
    """The state entering `rank`'s slice: the maps of the ranks before it, folded from the last rank where
    a sequence started (rank 0 always starts one). `maps[j]`: rank j's map (`cp_state` layout)."""
    n_maps = len(maps[0]) - (2 if spec.zero_sum else 1)
    j0 = max(j for j in range(rank) if not slices[j].passthrough)
    state = list(maps[j0][n_maps:])
    for j in range(j0 + 1, rank):
        state = cp_state.step(spec, maps[j], state)
    return state


def outgoing_grad(spec: VariantSpec, slices: Sequence[RankSlice], rank: int, maps: Sequence[Sequence[torch.Tensor]],
                  own: Sequence[torch.Tensor], state_in: Optional[Sequence[torch.Tensor]],
                  d_in: Sequence[Sequence[torch.Tensor]]) -> list[Optional[torch.Tensor]]:
    """Gradients of this rank's map `own` (leaves) from the incoming-state gradients `d_in[j]` of the ranks
    after it: the fold of `incoming_state` run backward (transposed maps), by autograd on these few states."""
    n_maps = len(own) - (2 if spec.zero_sum else 1)
    with torch.enable_grad():
        state = cp_state.step(spec, own, state_in) if slices[rank].passthrough else list(own[n_maps:])
        total = None
        for j in range(rank + 1, len(slices)):
            if not slices[j].continues:
                break
            term = sum((s * d).sum() for s, d in zip(state, d_in[j]))
            total = term if total is None else total + term
            if not slices[j].passthrough:
                break
            state = cp_state.step(spec, maps[j], state)
        if total is None:
            return [None] * len(own)
        wanted = [t for t in own if t.requires_grad]
        got = iter(torch.autograd.grad(total, wanted, allow_unused=True)) if wanted else iter(())
        return [next(got) if t.requires_grad else None for t in own]


@torch.compiler.disable  # collectives and per-rank passes run eagerly (a graph break under torch.compile)
def attention(spec: VariantSpec, run: Callable[..., Any], q, k, v, kwargs: dict, ctx: CPContext,
              grads: Optional[Sequence[str]] = None):
    """One rank's part of a context-parallel call of `run` (the op with the call convention, without
    cp_context) -> `(o [1, T_local, HV, V], final_state)`. The final state has one row per sequence ending
    in this slice (`ctx.ending_sequences`; zero rows when none does), or is None unless requested. Inputs
    not split by token (g_gamma, norm_weight) get this rank's share of their gradient: sum it over the
    ranks, as for any parameter. `grads`: the inputs `run` differentiates (None: all); the others are
    constants here too."""
    from .cp_run import SliceJob

    if spec.delta_gate != "direct":  # the slice maps read g as a log decay
        raise NotImplementedError(f"delta_gate: {spec.delta_gate!r} (the gate computed in the kernel) is not "
                                  "supported by context parallelism yet; expected \"direct\" (pass g and beta)")
    job = SliceJob.build(spec, run, q, k, v, kwargs, ctx, grads)
    tensors = [q, k, v, *(kwargs.get(n) for n in TENSOR_INPUTS), *state_parts(kwargs.get("initial_state"))]
    if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors):
        outs = CPFunction.apply(job, *tensors)
    else:
        with torch.no_grad():  # no local graphs to keep
            outs = job.forward(tensors)
    o, finals = outs[0], list(outs[1:])
    return o, (join_state(finals) if job.want_final else None)


class CPFunction(torch.autograd.Function):
    """`apply(job, q, k, v, *TENSOR_INPUTS values, *initial-state parts) -> (o, *final-state parts)`. The
    forward records the job's local graphs (detached leaves); the backward replays them in two phases around
    the all-gather of incoming-state gradients (`SliceJob.backward`)."""

    @staticmethod
    def forward(fctx, job, *tensors):
        leaves = [t.detach().requires_grad_(t.requires_grad) if isinstance(t, torch.Tensor) else t for t in tensors]
        with torch.enable_grad():
            outs = job.forward(leaves)
        fctx.job, fctx.leaves = job, leaves
        fctx.set_materialize_grads(False)
        return tuple(t.detach() for t in outs)

    @staticmethod
    def backward(fctx, do, *dfinal):
        grads = fctx.job.backward(fctx.leaves, do, dfinal)
        fctx.job = fctx.leaves = None  # the local graphs are spent
        return (None, *grads)
