"""Gradients: gradcheck of the naive form for every differentiable input; recurrent and chunked
autograd match the naive one."""

from __future__ import annotations

import pytest
import torch

from refcases import ALL, BUILTINS, assert_close, flat, shrink
from slagen.reference import attention, make_inputs

# A representative set covering every differentiable input at least once.
GRADCHECK_SPECS = ("linear", "sla_retnet", "sla_mamba2", "w_gla", "both_gdn", "zeros", "sla_zeros",
                   "zeros_retnet", "zeros_mamba2", "zeros_gla")


def _leaves(inputs):
    """The differentiable tensors of an input dict, in a fixed order, as (name, tensor)."""
    out = []
    for name, t in inputs.items():
        parts = t if isinstance(t, tuple) else (t,)
        for j, p in enumerate(parts):
            if isinstance(p, torch.Tensor) and p.is_floating_point():
                out.append((f"{name}[{j}]" if isinstance(t, tuple) else name, p))
    return out


def _rebuild(inputs, values):
    it = iter(values)
    out = {}
    for name, t in inputs.items():
        if isinstance(t, tuple):
            out[name] = tuple(next(it) if p.is_floating_point() else p for p in t)
        elif isinstance(t, torch.Tensor) and t.is_floating_point():
            out[name] = next(it)
        else:
            out[name] = t
    return out


def _setup(name):
    spec = shrink(ALL[name], 16, 16)
    x = make_inputs(spec, 1, 5, 2, seed=51, with_initial_state=True, requires_grad=True)
    leaves = _leaves(x)
    expected = {"q", "k", "v", "initial_state", *spec.required_inputs()}
    expected |= {"norm_weight"} if spec.output_norm == "rms" else set()
    assert {n.split("[")[0] for n, _ in leaves} == expected

    def fn(*values):
        o, state = attention(spec, **_rebuild(x, values), output_final_state=True)
        return (o, *state) if isinstance(state, tuple) else (o, state)

    return fn, leaves


@pytest.mark.parametrize("name", GRADCHECK_SPECS)
def test_gradcheck_naive(name):
    """Every input, outputs o and the final state; fast mode (random projections of the Jacobian)."""
    fn, leaves = _setup(name)
    assert torch.autograd.gradcheck(fn, [t for _, t in leaves], eps=1e-6, atol=1e-7, rtol=1e-6, fast_mode=True)


@pytest.mark.parametrize("name", ["sla_gla", "both_gdn", "sla_zeros", "zeros_mamba2"])
def test_gradcheck_naive_full_jacobian(name):
    """Full Jacobians of o for every input but the (large) state, on the specs with the most inputs."""
    fn, leaves = _setup(name)
    values = [t for _, t in leaves]
    stateless = [i for i, (n, _) in enumerate(leaves) if not n.startswith("initial_state")]

    def output_only(*subset):
        full = list(values)
        for i, t in zip(stateless, subset):
            full[i] = t
        return fn(*full)[0]

    assert torch.autograd.gradcheck(output_only, [values[i] for i in stateless], eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_method_gradients_match_naive(name):
    spec = BUILTINS[name]
    x = make_inputs(spec, 2, 37, 2, seed=52, with_initial_state=True, requires_grad=True)
    leaves = [t for _, t in _leaves(x)]
    gen = torch.Generator().manual_seed(53)
    weights = None
    grads = {}
    for method in ("naive", "recurrent", "chunked"):
        o, state = attention(spec, **x, output_final_state=True, method=method, chunk_size=16)
        out = torch.cat([o.flatten(), flat(state)])
        out = torch.where(torch.isfinite(out), out, 0.0)  # an empty ZeroS state row could hold m = -inf
        if weights is None:
            weights = torch.randn(out.shape, generator=gen, dtype=out.dtype)
        grads[method] = torch.autograd.grad((out * weights).sum(), leaves)
    for method in ("recurrent", "chunked"):
        for g_ref, g in zip(grads["naive"], grads[method]):
            assert_close(g, g_ref)
