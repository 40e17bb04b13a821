"""Shared pieces of the gated-family gradient tests: compiled ops with a backward config, leaf inputs,
losses with random incoming gradients, per-input relative-RMS comparison."""

from __future__ import annotations

import functools
import json

import torch

import slagen
from gated_helpers import inputs, reference, rel_rms, small_spec


@functools.lru_cache(maxsize=None)
def compiled_bwd(name: str, backward_json: str = "{}", forward_json: str = "{}"):
    # the named configs as they are: a value the spec's plans do not allow fails the test (ConfigError)
    return slagen.compile(small_spec(name), json.loads(forward_json), recurrent_config={"block_v": 16},
                          backward_config=json.loads(backward_json))


def leaves(ker: dict, ref: dict) -> tuple[dict, dict]:
    """Every floating input but g_gamma (a constant) becomes a leaf that requires grad, in both dicts."""
    def mark(d):
        return {k: (x.detach().clone().requires_grad_(k != "g_gamma") if x.is_floating_point() else x)
                for k, x in d.items()}
    return mark(ker), mark(ref)


def incoming(o: torch.Tensor, state: torch.Tensor, seed: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float64 dL/do and dL/dfinal_state (never zeros)."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(o.shape, generator=gen, dtype=torch.float64),
            torch.randn(state.shape, generator=gen, dtype=torch.float64))


def loss(o, state, do, dht):
    return (o.double() * do.to(o.device)).sum() + (state.double() * dht.to(state.device)).sum()


def reference_grads(name: str, ref: dict, do=None, dht=None, **kwargs):
    """(grads of every leaf of `ref` through the float64 naive reference, do, dht)."""
    o, state = reference(name, ref, **kwargs)
    if do is None:
        do, dht = incoming(o, state)
    loss(o, state, do, dht).backward()
    return {k: x.grad for k, x in ref.items() if isinstance(x, torch.Tensor) and x.requires_grad}, do, dht


def assert_grads_close(got: dict, want: dict, tol: float) -> None:
    assert set(got) == set(want), f"gradients for {sorted(got)}, expected {sorted(want)}"
    errors = {}
    for k in want:
        assert got[k] is not None, f"{k}: no gradient"
        errors[k] = rel_rms(got[k], want[k])
    bad = {k: f"{e:.2e}" for k, e in errors.items() if not e < tol}
    every = {k: f"{e:.1e}" for k, e in errors.items()}
    assert not bad, f"relative RMS of gradients over {tol:g}: {bad} (all: {every})"


def kernel_grads(op, ker: dict, do, dht, recurrent: bool = False, **kwargs) -> dict:
    fn = op.recurrent if recurrent else op
    o, state = fn(**ker, output_final_state=True, **kwargs)
    loss(o, state, do, dht).backward()
    return {k: x.grad for k, x in ker.items() if isinstance(x, torch.Tensor) and x.requires_grad}


def grad_case(name: str, B: int, T, H: int, *, seed: int, seqlens=None):
    """(kernel leaves, reference grads, do, dht) from one draw."""
    ker, ref = leaves(*inputs(name, B, T, H, seed=seed, seqlens=seqlens))
    want, do, dht = reference_grads(name, ref)
    return ker, want, do, dht


class Launches:
    """Stands in for a module's @triton.jit kernel: counts `kernel[grid](...)` launches, then runs it."""

    def __init__(self, kernel) -> None:
        self.kernel, self.count = kernel, 0

    def __getitem__(self, grid):
        self.count += 1
        return self.kernel[grid]
