"""What one rank runs in the context-parallel tests (started by `torch.multiprocessing.spawn`).

The interpreter is switched on before torch or triton is imported: each rank is a fresh process.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("SLAGEN_POISON_OUTPUTS", "1")

import contextlib  # noqa: E402
import datetime  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import weakref  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_leaves  # noqa: E402

from cp_cases import case_inputs, loss, make_op, shard  # noqa: E402


def run_rank(rank: int, world: int, rendezvous: str, cases: list, out_dir: str) -> None:
    """Run every case on this rank and save `{case name: {o, final, ends, grads, peak, seconds}}` to
    `out_dir/rank<r>.pt`."""
    start = time.perf_counter()
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    import slagen.cp

    results = {"startup_seconds": time.perf_counter() - start}
    try:
        for case in cases:
            start = time.perf_counter()
            results[case["name"]] = _one(case, rank, world, slagen.cp)
            results[case["name"]]["seconds"] = time.perf_counter() - start
    except Exception:  # the parent reports it; the other ranks then fail on their next collective
        results["error"] = traceback.format_exc()
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _one(case: dict, rank: int, world: int, cp) -> dict:
    op = make_op(case)
    full, do, dht = case_inputs(case)
    T = full["q"].shape[1]
    ctx = cp.context(None, full.get("cu_seqlens"))
    t_local = T // world
    mine = shard(full, rank, t_local)
    mine = {k: (x.detach().clone().requires_grad_(x.is_floating_point()) if isinstance(x, torch.Tensor) else
                tuple(p.detach().clone().requires_grad_() for p in x)) for k, x in mine.items()}
    ends = list(ctx.ending_sequences(t_local))
    do_mine = do[:, rank * t_local:(rank + 1) * t_local]
    dht_mine = tuple(d[ends] for d in dht)
    # the memory case runs the reference (Triton's interpreter does not run under a dispatch mode)
    mem = LiveBytes([mine, do_mine, dht_mine]) if case["name"] == "memory" else contextlib.nullcontext()
    with mem:
        o, final = op(**mine, output_final_state=True, cp_context=ctx)
        loss(o, final, do_mine, dht_mine).backward()
    grads = {}
    for k, x in mine.items():
        if isinstance(x, tuple):
            grads[k] = tuple(p.grad for p in x)
        elif isinstance(x, torch.Tensor) and x.requires_grad:
            grads[k] = x.grad
    o_plain = None
    if not case["kernel"]:  # the inference path (no autograd, no local graphs) gives the same output
        with torch.no_grad():
            o_plain = op(**mine, cp_context=ctx)[0]
    return dict(o=o.detach(), final=tuple(p.detach() for p in (final if isinstance(final, tuple) else (final,))),
                ends=ends, grads=grads, peak=getattr(mem, "peak", None), o_plain=o_plain)


class LiveBytes(TorchDispatchMode):
    """Peak bytes of torch storages allocated while active and still alive (each storage counted once, until
    it is freed): what the context-parallel call adds to a rank's memory."""

    def __init__(self, existing=()):
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = {id(t.untyped_storage()) for t in tree_leaves(list(existing))
                                if isinstance(t, torch.Tensor)}  # views of these allocate nothing

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t.untyped_storage())
        return out

    def _track(self, storage) -> None:
        key = id(storage)
        if key in self._seen:
            return
        self._seen.add(key)
        self.live += storage.nbytes()
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key, storage.nbytes())

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes
