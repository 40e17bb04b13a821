"""Shared pieces of the delta- and zeros-family gradient tests: the rendered backward module called directly,
the compiled (autograd) op, float64 reference gradients, random incoming gradients, relative-RMS checks."""

from __future__ import annotations

import functools

import torch

import slagen
from slagen.codegen import lower, render
from slagen.reference import attention
from slagen.runtime.loader import load_source


def parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def fp32(x):
    """float64 reference inputs as a caller passes them to the kernels (a dict, a state tuple or a tensor)."""
    if isinstance(x, dict):
        return {name: fp32(value) for name, value in x.items()}
    if isinstance(x, tuple):
        return tuple(fp32(t) for t in x)
    return x.detach().float() if x.is_floating_point() else x


@functools.lru_cache(maxsize=None)
def _module(spec, chunk_size: int, block_v: int, algorithm: str | None = None):
    plan = lower(spec)["backward"]
    config = {"chunk_size": chunk_size, "block_v": block_v}
    if algorithm is not None:  # the delta backward's axis (zeros has none)
        config["algorithm"] = algorithm
    return load_source(render(plan, plan.validate_config(config, partial=True)))


def module_grads(spec, inp: dict, do, dht, chunk_size=16, block_v=16, algorithm=None) -> dict:
    """The rendered backward module called directly with fp32 inputs (`algorithm`: the delta backward's)."""
    scale = 1.0 if spec.zero_sum else spec.head_dim_k ** -0.5
    kw = {n: fp32(x) for n, x in inp.items()}
    dht = None if dht is None else fp32(dht)
    return _module(spec, chunk_size, block_v, algorithm).backward(**kw, scale=scale, do=do.float(), dht=dht)


def incoming(spec, o, final, seed=5):
    """Random float64 dL/do and dL/dfinal_state. For ZeroS the m component is the one the state's scale
    freedom (F~, E~, m) ~ (F~ e^c, E~ e^c, m - c) implies, sum(dF~ F~) + dE~ E~: with it the path through
    the running max cancels, as it does for any consumer of the state (the kernels treat m as a constant)."""
    gen = torch.Generator().manual_seed(seed)
    do = torch.randn(o.shape, generator=gen, dtype=torch.float64)
    if final is None:
        return do, None
    dht = tuple(torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in parts(final))
    if spec.zero_sum:
        kv, st = (p.detach() for p in final)
        dht[1][..., 2] = (dht[0][:, :, 0] * kv[:, :, 0]).sum((-1, -2)) + dht[1][..., 0] * st[..., 0]
        return do, dht
    return do, dht[0]


def leaf_names(inp: dict) -> list[str]:
    return [n for n, x in inp.items() if n not in ("g_gamma", "cu_seqlens")]


def reference_grads(spec, inp: dict, *, with_final=True, seed=5):
    """(float64 autograd gradients of every differentiable input through the naive reference, do, dht)."""
    leaves = {n: tuple(p.detach().clone().requires_grad_() for p in parts(x)) if n == "initial_state"
              else x.detach().clone().requires_grad_() for n, x in inp.items() if n in leaf_names(inp)}
    call = dict(inp)
    for n, x in leaves.items():
        call[n] = (x if spec.zero_sum else x[0]) if n == "initial_state" else x
    o, final = attention(spec, **call, output_final_state=True, method="naive")
    do, dht = incoming(spec, o, final if with_final else None, seed)
    total = (o * do).sum()
    if dht is not None:
        total = total + sum((p * d).sum() for p, d in zip(parts(final), parts(dht)))
    flat = [t for x in leaves.values() for t in (x if isinstance(x, tuple) else (x,))]
    grads = iter(torch.autograd.grad(total, flat, allow_unused=True))
    want = {n: (tuple(next(grads) for _ in x) if isinstance(x, tuple) else next(grads)) for n, x in leaves.items()}
    if "initial_state" in want and not spec.zero_sum:
        want["initial_state"] = want["initial_state"][0]
    return want, do, dht


def rel_rms(got, want) -> float:
    got, want = got.double().cpu(), want.double().cpu()
    assert torch.isfinite(got).all()
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


def state_errors(spec, got, want) -> dict:
    if not spec.zero_sum:
        return {"initial_state": rel_rms(got, want)}
    # every part of a ZeroS state: kv, and the statistics E~, P, m, n one by one
    errors = {"initial_state.kv": rel_rms(got[0], want[0])}
    for j, name in enumerate(("E", "P", "m", "n")):
        errors[f"initial_state.{name}"] = rel_rms(got[1][..., j], want[1][..., j])
    return errors


def assert_grads_close(spec, got: dict, want: dict, tol: float) -> None:
    errors = {}
    for n, w in want.items():
        assert got.get(n) is not None, f"{n}: no gradient"
        if n == "initial_state":
            errors.update(state_errors(spec, got[n], w))
        else:
            errors[n] = rel_rms(got[n], w)
    bad = {n: f"{e:.2e}" for n, e in errors.items() if not e < tol}
    assert not bad, f"relative RMS over {tol:g}: {bad} (all: { {n: f'{e:.1e}' for n, e in errors.items()} })"


def autograd_grads(op, spec, inp: dict, do, dht, recurrent=False) -> dict:
    """Gradients through `slagen.compile(spec)` with fp32 leaves and `.backward()`."""
    leaves = {n: (tuple(fp32(p).requires_grad_() for p in x) if isinstance(x, tuple) else fp32(x).requires_grad_())
              for n, x in inp.items() if n in leaf_names(inp)}
    call = {**{n: fp32(x) for n, x in inp.items()}, **leaves}
    o, final = (op.recurrent if recurrent else op)(**call, output_final_state=True)
    total = (o.double() * do).sum()
    if dht is not None:
        total = total + sum((p.double() * d).sum() for p, d in zip(parts(final), parts(dht)))
    total.backward()
    return {n: (tuple(p.grad for p in x) if isinstance(x, tuple) else x.grad) for n, x in leaves.items()}


@functools.lru_cache(maxsize=None)
def compiled(spec, chunk_size=16, block_v=16):
    return slagen.compile(spec, {"chunk_size": chunk_size, "block_v": block_v},
                          recurrent_config={"block_v": block_v},
                          backward_config={"chunk_size": chunk_size, "block_v": block_v})
