"""Cases of the context-parallel tests: the op (the float64 reference or compiled kernels), inputs for the
whole packed batch, a rank's shard of them, and the loss every rank takes on its part."""

from __future__ import annotations

import dataclasses
import functools

import torch

import slagen
from slagen.reference import attention, make_inputs
from slagen.runtime import cp
from slagen.spec import BUILTIN_SPECS

TOKEN_INPUTS = cp.TOKEN_INPUTS


def case(name: str, spec: str, *, T: int = 16, H: int = 2, HV: int | None = None, seqlens=None, kernel: bool = False,
         seed: int = 0, dims=(16, 16), config=None, chunk: int = 8) -> dict:
    """`kernel`: compiled kernels (fp32, `config` per op) instead of the float64 reference (`chunk` tokens
    per chunk). `HV`: value heads (grouped value heads when a multiple of `H` above it; default `H`)."""
    return dict(name=name, spec=spec, T=T, H=H, HV=HV or H, seqlens=seqlens, kernel=kernel, seed=seed, dims=dims,
                config=config or {}, chunk=chunk)


@functools.lru_cache(maxsize=None)
def _spec(name: str, dims: tuple[int, int]):
    return dataclasses.replace(BUILTIN_SPECS[name], head_dim_k=dims[0], head_dim_v=dims[1])


def spec_of(c: dict):
    return _spec(c["spec"], tuple(c["dims"]))


def make_op(c: dict):
    """`op(q, k, v, **kwargs, cp_context=None)`: compiled kernels, or the float64 chunked reference."""
    spec = spec_of(c)
    if c["kernel"]:
        return slagen.compile(spec, c["config"].get("forward"), backward_config=c["config"].get("backward"))
    run = functools.partial(attention, spec, method="chunked", chunk_size=c["chunk"])

    def op(q, k, v, *, cp_context=None, **kwargs):
        if cp_context is None:
            return run(q, k, v, **kwargs)
        return cp.attention(spec, run, q, k, v, kwargs, cp_context)

    return op


def case_inputs(c: dict) -> tuple[dict, torch.Tensor, tuple]:
    """(inputs for the whole batch with an initial state, dL/do, dL/dfinal-state parts), deterministic."""
    spec = spec_of(c)
    dtype = torch.float32 if c["kernel"] else torch.float64
    seqlens = c["seqlens"]
    x = make_inputs(spec, 1, None if seqlens else c["T"], c["H"], seqlens=seqlens, with_initial_state=True,
                    seed=c["seed"], value_heads=c["HV"])
    if c["kernel"]:
        x = {k: (tuple(p.float() for p in v) if isinstance(v, tuple) else
                 v.float() if v.is_floating_point() else v) for k, v in x.items()}
    gen = torch.Generator().manual_seed(c["seed"] + 1)
    T = x["q"].shape[1]
    do = torch.randn(1, T, c["HV"], spec.head_dim_v, generator=gen, dtype=torch.float64).to(dtype)
    parts = x["initial_state"] if isinstance(x["initial_state"], tuple) else (x["initial_state"],)
    dht = tuple(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype) for p in parts)
    return x, do, dht


def shard(full: dict, rank: int, t_local: int) -> dict:
    """One rank's inputs: its token slice, every per-head input, the whole initial state; no cu_seqlens."""
    out = {}
    for k, x in full.items():
        if k == "cu_seqlens":
            continue
        out[k] = x[:, rank * t_local:(rank + 1) * t_local].contiguous() if k in TOKEN_INPUTS else x
    return out


def loss(o, final, do, dht) -> torch.Tensor:
    """<o, do> + <final, dht>. For a ZeroS state the max's gradient is the one its scale freedom implies,
    `F̃·dF̃ + Ẽ·dẼ` (any consumer of a state sees it so; the kernels treat the max as a constant)."""
    parts = final if isinstance(final, tuple) else (final,)
    total = (o.double() * do.double()).sum()
    if len(parts) == 2:
        kv, st = (p.detach().double() for p in parts)
        dht = (dht[0], dht[1].clone())
        dht[1][..., 2] = (dht[0][:, :, 0].double() * kv[:, :, 0]).sum((-1, -2)) + dht[1][..., 0].double() * st[..., 0]
    for p, d in zip(parts, dht):
        total = total + (p.double() * d.double()).sum()
    return total


def single_process(c: dict) -> dict:
    """The oracle: the same op on the whole batch in one process, with the same incoming gradients."""
    full, do, dht = case_inputs(c)
    leaves = {k: (x.detach().clone().requires_grad_(x.is_floating_point()) if isinstance(x, torch.Tensor) else
                  tuple(p.detach().clone().requires_grad_() for p in x)) for k, x in full.items()}
    o, final = make_op(c)(**leaves, output_final_state=True)
    loss(o, final, do, dht).backward()
    grads = {k: (tuple(p.grad for p in x) if isinstance(x, tuple) else x.grad) for k, x in leaves.items()
             if isinstance(x, tuple) or (isinstance(x, torch.Tensor) and x.requires_grad)}
    return dict(o=o.detach(), final=tuple(p.detach() for p in (final if isinstance(final, tuple) else (final,))),
                grads=grads)
