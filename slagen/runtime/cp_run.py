"""One rank's work in a context-parallel call (`cp.py` explains the algorithm): the op's passes over the
slice, the exchange of maps, and the two-phase backward around the exchange of incoming-state gradients.

Passes of the op (each through its own autograd): "rest" runs the sequences that start in the slice (with
their rows of the caller's initial state); "span" runs a slice that lies inside one sequence from an empty
state (its map, with `cp_state.decay_maps`); "head" runs the sequence crossing into the slice from the state
the fold gives. A rank does only the passes its slice needs. torch only (runtime leaf).
"""

from __future__ import annotations

import functools
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch

from ..spec import VariantSpec
from . import cp_state
from .autograd import TENSOR_INPUTS, join_state, state_parts
from .cp import CPContext, RankSlice, TOKEN_INPUTS, gather, incoming_state, outgoing_grad

NAMES = ("q", "k", "v", *TENSOR_INPUTS)


@dataclass
class SliceJob:
    spec: VariantSpec
    run: Callable[..., Any]  # the op: run(q, k, v, **call-convention keywords) -> (o, final_state)
    ctx: CPContext
    slices: list[RankSlice]
    want_final: bool
    t_local: int
    heads: int  # HV, the value heads: every exchanged state and map has one row per value head
    state_dtype: torch.dtype
    grads: Optional[frozenset] = None  # the inputs the op differentiates (None: all)
    saved: dict = field(default_factory=dict)  # the forward's local graphs, for backward

    @classmethod
    def build(cls, spec: VariantSpec, run: Callable[..., Any], q, k, v, kwargs: dict, ctx: Any,
              grads: Optional[Sequence[str]] = None) -> "SliceJob":
        """Check what context parallelism adds to the call convention (the op checks the rest per pass)."""
        if not isinstance(ctx, CPContext) and type(ctx).__name__ == "CPContext" and dataclasses.is_dataclass(ctx):
            # a context from another copy of this runtime (slagen's own, or another generated package's)
            ctx = CPContext(**{f.name: getattr(ctx, f.name) for f in dataclasses.fields(CPContext)})
        if not isinstance(ctx, CPContext):
            raise ValueError(f"cp_context: expected a context from slagen.cp.context(group, cu_seqlens), got "
                             f"{type(ctx).__name__}")
        if kwargs.get("cu_seqlens") is not None:
            raise ValueError("cu_seqlens: expected None under cp_context (pass the global cu_seqlens to "
                             "slagen.cp.context instead)")
        if not isinstance(q, torch.Tensor) or q.dim() != 4 or q.shape[0] != 1 or q.shape[1] < 1:
            got = list(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__
            raise ValueError(f"q: expected this rank's slice [1, T_local, H, K] with T_local >= 1 under cp_context, "
                             f"got {got}")
        if not isinstance(v, torch.Tensor) or v.dim() != 4 or v.shape[:2] != q.shape[:2]:
            got = list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"v: expected this rank's slice [1, {q.shape[1]}, HV, V] under cp_context, got {got}")
        for flag in ("initial_state", "final_state"):
            if not getattr(spec, flag):
                raise ValueError(f"cp_context: spec {spec.name!r} has {flag}=False; context parallelism passes states "
                                 "between ranks and needs both initial and final states")
        if ctx.bounds is not None and not spec.varlen:
            raise ValueError(f"cp_context: the context has cu_seqlens but spec {spec.name!r} has varlen=False")
        for i, part in enumerate(state_parts(kwargs.get("initial_state"))):
            if not isinstance(part, torch.Tensor) or part.dim() < 1 or part.shape[0] != ctx.num_sequences:
                got = list(part.shape) if isinstance(part, torch.Tensor) else type(part).__name__
                raise ValueError(f"initial_state: expected {ctx.num_sequences} rows (one per sequence of the context) "
                                 f"in part {i}, got {got}")
        want_final = kwargs.get("output_final_state", False)
        if not isinstance(want_final, bool):
            raise ValueError(f"output_final_state: expected True or False, got {want_final!r}")
        bound = functools.partial(run, scale=kwargs.get("scale"))
        return cls(spec, bound, ctx, ctx.slices(q.shape[1]), want_final, q.shape[1], v.shape[2],
                   torch.float64 if q.dtype == torch.float64 else torch.float32,
                   None if grads is None else frozenset(grads))

    @property
    def me(self) -> RankSlice:
        return self.slices[self.ctx.rank]

    @property
    def exchanges(self) -> bool:
        """Some rank continues a sequence: maps (and in backward, gradients) go round. Same on every rank."""
        return any(s.continues for s in self.slices)

    def _zeros(self, shapes, device) -> list[torch.Tensor]:
        return [torch.zeros(s, dtype=self.state_dtype, device=device) for s in shapes]

    # --- forward ------------------------------------------------------------------------------------------

    def forward(self, tensors: Sequence[Any]) -> list[torch.Tensor]:
        """`tensors`: q, k, v, TENSOR_INPUTS values, initial-state parts -> [o, *final-state parts]."""
        spec, me, grad = self.spec, self.me, torch.is_grad_enabled()
        x = dict(zip(NAMES, tensors[:len(NAMES)]))
        init = list(tensors[len(NAMES):])
        if self.grads is not None:  # what the op treats as a constant, the maps do too (g_gamma for kernels)
            x = {n: (t.detach() if t is not None and n not in self.grads else t) for n, t in x.items()}
            init = init if "initial_state" in self.grads else [p.detach() for p in init]
        device = x["q"].device

        def part(a: int, b: int) -> dict:
            return {n: (t[:, a:b] if n in TOKEN_INPUTS else t) for n, t in x.items() if t is not None}

        segs = me.segments
        rest = segs[1:] if me.continues else segs
        head_len = segs[0][2] if me.continues else 0
        o_rest = fin_rest = None
        if rest:  # sequences starting here: independent of the other ranks
            r0 = rest[0][1]
            cu = None if len(rest) == 1 else torch.tensor([0] + [e - r0 for _, _, e in rest], dtype=torch.int64,
                                                         device=device)
            ids = torch.tensor([i for i, _, _ in rest], dtype=torch.int64, device=device)
            rows = join_state([p.index_select(0, ids) for p in init])
            o_rest, fin = self.run(**part(r0, self.t_local), initial_state=rows, output_final_state=True,
                                   cu_seqlens=cu)
            fin_rest = state_parts(fin)
        own = None
        if me.passthrough:  # the slice's map: its span from an empty state, and its decay factors
            span = part(0, self.t_local)
            _, b = self.run(**span, output_final_state=True)
            own = [*cp_state.decay_maps(spec, self.run, span, self.heads), *(p[0] for p in state_parts(b))]
        elif me.passes_on:  # a sequence starts here and goes on: its state does not depend on earlier ranks
            decays = cp_state.map_shapes(spec, self.heads)[:-len(fin_rest)]
            own = [*self._zeros(decays, device), *(p[-1] for p in fin_rest)]
        shapes = cp_state.map_shapes(spec, self.heads)
        maps = state_in = leaf_in = None
        if self.exchanges:
            payload = [t.detach() for t in own] if own is not None else self._zeros(shapes, device)
            flat = gather(self.ctx, payload)
            maps = [cp_state.unpack(flat[j], shapes) for j in range(self.ctx.world_size)]
        o_head = fin_head = None
        head_ends = me.continues and not me.passthrough  # the crossing sequence ends in this slice
        if me.continues:
            state_in = incoming_state(spec, self.slices, self.ctx.rank, maps)
            leaf_in = [s.detach().requires_grad_(grad) for s in state_in]
            o_head, fin = self.run(**part(0, head_len), initial_state=join_state([s[None] for s in leaf_in]),
                                   output_final_state=self.want_final and head_ends)
            fin_head = state_parts(fin) if self.want_final and head_ends else []
        o = torch.cat([t for t in (o_head, o_rest) if t is not None], dim=1)
        outs = [o]
        if self.want_final:
            n_rest = len(rest) - (1 if me.passes_on and rest else 0)
            finals = []
            for p, shape in enumerate(cp_state.state_shapes(spec, self.heads)):
                pieces = ([fin_head[p]] if fin_head else []) + ([fin_rest[p][:n_rest]] if n_rest else [])
                finals.append(torch.cat(pieces) if pieces else
                              torch.zeros((0, *shape), dtype=self.state_dtype, device=device))
            outs += finals
        if grad:
            self.saved = dict(o_head=o_head, fin_head=fin_head or [], o_rest=o_rest, fin_rest=fin_rest or [],
                              own=own, maps=maps, state_in=state_in, leaf_in=leaf_in, head_len=head_len,
                              n_head_rows=1 if fin_head else 0)
        return outs

    # --- backward -----------------------------------------------------------------------------------------

    def backward(self, leaves: Sequence[Any], do: Optional[torch.Tensor], dfinal: Sequence[Optional[torch.Tensor]]):
        """Gradients for `leaves` (the forward's inputs) from dL/do and dL/dfinal-state parts (None: zero)."""
        s, me = self.saved, self.me
        wanted = [i for i, t in enumerate(leaves) if isinstance(t, torch.Tensor) and t.requires_grad]
        total: list[Optional[torch.Tensor]] = [None] * len(leaves)

        def backprop(pairs, extra=()) -> list[Optional[torch.Tensor]]:
            pairs = [(t, g) for t, g in pairs if t is not None and g is not None and t.requires_grad]
            if not pairs:
                return [None] * len(extra)
            inputs = [leaves[i] for i in wanted] + list(extra)
            got = torch.autograd.grad([t for t, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True)
            for i, gr in zip(wanted, got):
                if gr is not None:
                    total[i] = gr if total[i] is None else total[i] + gr
            return list(got[len(wanted):])

        h = s["head_len"]
        do_head = None if do is None else do[:, :h]
        do_rest = None if do is None else do[:, h:]
        n_head = s["n_head_rows"]
        head_pairs = [(s["o_head"], do_head)]
        for p, fin in enumerate(s["fin_head"]):
            head_pairs.append((fin, None if dfinal[p] is None else dfinal[p][:n_head]))
        d_in = backprop(head_pairs, s["leaf_in"] or ()) if me.continues else []
        d_own = [None] * len(s["own"] or [])
        if self.exchanges:
            shapes = cp_state.state_shapes(self.spec, self.heads)
            mine = [d if d is not None else torch.zeros(sh, dtype=self.state_dtype, device=leaves[0].device)
                    for d, sh in zip(d_in or [None] * len(shapes), shapes)]
            flat = gather(self.ctx, mine)
            every = [cp_state.unpack(flat[j], shapes) for j in range(self.ctx.world_size)]
            if s["own"] is not None:
                own = [t.detach().requires_grad_(t.requires_grad) for t in s["own"]]
                d_own = outgoing_grad(self.spec, self.slices, self.ctx.rank, s["maps"], own, s["state_in"], every)
        rest_pairs = [(s["o_rest"], do_rest)]
        n_state = len(s["fin_rest"])
        for p, fin in enumerate(s["fin_rest"]):
            g = None
            n_end = fin.shape[0] - (1 if me.passes_on else 0)
            if self.want_final and dfinal[p] is not None and n_end:
                g = torch.zeros_like(fin)
                g[:n_end] = dfinal[p][n_head:n_head + n_end]
            if me.passes_on and not me.passthrough and d_own[len(d_own) - n_state + p] is not None:
                g = torch.zeros_like(fin) if g is None else g
                g[-1] += d_own[len(d_own) - n_state + p]
            rest_pairs.append((fin, g))
        if me.passthrough:
            rest_pairs += list(zip(s["own"], d_own))
        backprop(rest_pairs)
        return total
