"""Class 3 of issue 12: kernels and the reference agree on the domain of log decays.

`g = -inf` (forget everything at one token, e.g. a document boundary) is a legitimate log decay: every path
(chunked forward, recurrent, varlen, backward) must give the reference's result. Before the clamp in
`templates/common.py.jinja:log_decay` the chunked kernels returned NaN (`-inf - -inf` in chunk cumsums).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import slagen
from slagen.reference import attention, make_inputs
from slagen.spec import BUILTIN_SPECS

pytestmark = pytest.mark.interpreter
SMALL = dict(head_dim_k=16, head_dim_v=16)
TOL = 2e-4  # fp32 kernels against the float64 reference; a NaN or a wrong decay is >> 1e-2


def _spec(name):
    return dataclasses.replace(BUILTIN_SPECS[name], **SMALL)


def _compiled(spec):
    # chunks of 16 over T = 36: the -inf tokens fall in the first, inside and at the edge of later chunks
    return slagen.compile(spec, {"chunk_size": 16}, backward_config={"chunk_size": 16})


def _forget(x: dict, tokens: list[int]) -> dict:
    x = dict(x)
    if "g" in x:
        x["g"] = x["g"].clone()
        for t in tokens:
            x["g"][:, t] = float("-inf")
    else:  # fixed decay: one head forgets everything at every step
        x["g_gamma"] = x["g_gamma"].clone()
        x["g_gamma"][0] = float("-inf")
    return x


def _f32(x: dict) -> dict:
    def cast(v):
        if isinstance(v, tuple):
            return tuple(cast(t) for t in v)
        return v.float() if torch.is_tensor(v) and v.is_floating_point() else v
    return {k: cast(v) for k, v in x.items()}


def _flat(result) -> torch.Tensor:
    o, state = result
    parts = [o] + (list(state) if isinstance(state, tuple) else [state])
    return torch.cat([p.detach().double().reshape(-1) for p in parts])


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    assert torch.isfinite(got).all(), "non-finite values"
    return float((got - want).norm() / want.norm())


@pytest.mark.parametrize("name", ["mamba2", "retnet", "gla", "gdn", "zeros_mamba2"])
def test_minus_inf_log_decay_matches_the_reference_on_every_path(name):
    spec = _spec(name)
    op = _compiled(spec)
    x = _forget(make_inputs(spec, 1, 36, 1, seed=5, with_initial_state=True), [0, 17, 18])
    want = attention(spec, **x, output_final_state=True, method="recurrent")
    for method in ("naive", "chunked"):  # the reference ladder agrees with itself on -inf
        assert _rel(_flat(attention(spec, **x, output_final_state=True, method=method)), _flat(want)) < 1e-10
    xf = _f32(x)
    assert _rel(_flat(op(**xf, output_final_state=True)), _flat(want)) < TOL
    assert _rel(_flat(op.recurrent(**xf, output_final_state=True)), _flat(want)) < TOL
    # varlen: the boundary inside the second sequence, and one at a sequence's first token
    xv = _forget(make_inputs(spec, 1, None, 1, seed=6, seqlens=[17, 20], with_initial_state=True), [17, 30])
    want_v = attention(spec, **xv, output_final_state=True, method="recurrent")
    assert _rel(_flat(op(**_f32(xv), output_final_state=True)), _flat(want_v)) < TOL


@pytest.mark.parametrize("name", ["mamba2", "gla", "gdn"])
def test_minus_inf_log_decay_gradients_match_the_reference(name):
    spec = _spec(name)
    op = _compiled(spec)
    x = _forget(make_inputs(spec, 1, 36, 1, seed=7, with_initial_state=True), [3, 17])
    names = [n for n in ("q", "k", "v", "g", "beta") if n in x]
    ref = {k: (v.clone().requires_grad_() if k in names else v) for k, v in x.items()}
    o_ref, _ = attention(spec, **ref, method="recurrent")
    do = torch.randn(o_ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    want = torch.autograd.grad((o_ref * do).sum(), [ref[n] for n in names])
    mine = {k: (v.requires_grad_() if k in names else v) for k, v in _f32(x).items()}
    o, _ = op(**mine)
    got = torch.autograd.grad((o * do.float()).sum(), [mine[n] for n in names])
    for n, a, b in zip(names, got, want):
        assert torch.isfinite(b).all(), f"reference gradient of {n} is not finite"
        assert _rel(a.double(), b) < 1e-3, n
