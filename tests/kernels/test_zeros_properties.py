"""ZeroS properties checked on the kernels themselves (MATH.md §4), chunked and recurrent.

Each zero check has a control that must come out clearly non-zero on the same path, so a kernel that
returned zeros (or never ran) would fail: varying values instead of constant ones, and the
undecayed-measure "state" variant, whose decayed weights do not sum to zero.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

import slagen
from slagen.reference import make_inputs
from slagen.spec import BUILTIN_SPECS

pytestmark = pytest.mark.interpreter

SMALL = dict(head_dim_k=32, head_dim_v=16)
SPECS = {name: dataclasses.replace(BUILTIN_SPECS[name], **SMALL)
         for name in ("zeros", "zeros_retnet", "zeros_mamba2", "zeros_gla")}
SPECS["zeros_mamba2_state"] = dataclasses.replace(SPECS["zeros_mamba2"], name="zeros_mamba2_state",
                                                  zero_sum_decay="state")
ZERO_SUM = ("zeros", "zeros_retnet", "zeros_mamba2")  # undecayed, or with a decay-consistent measure
METHODS = ("forward", "recurrent")


@functools.lru_cache(maxsize=None)
def compiled(name: str):
    return slagen.compile(SPECS[name], {"chunk_size": 16, "block_v": 16}, recurrent_config={"block_v": 16})


def run(name: str, method: str, inp: dict):
    op = compiled(name)
    fn = op if method == "forward" else op.recurrent
    o, state = fn(**inp, output_final_state=True)
    assert torch.isfinite(o).all()
    assert all(torch.isfinite(t).all() for t in state)
    return o, state


def inputs(name: str, method: str, seed: int = 0) -> dict:
    """Tiny shapes: the chunked pass crosses chunk boundaries (T = 37, chunk 16); the recurrent one is
    interpreted token by token, so it gets fewer tokens."""
    T = 37 if method == "forward" else 12
    return make_inputs(SPECS[name], 1, T, 2, dtype=torch.float32, seed=seed)


def constant_rows(inp: dict) -> dict:
    """q = k = one vector for every token (q.k = 1 after the L2 norm), v = one vector for every token."""
    inp = dict(inp)
    for name in ("q", "k", "v"):
        inp[name] = inp[name][:, :1].expand_as(inp[name]).contiguous()
    inp["k"] = inp["q"].clone()
    return inp


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ZERO_SUM)
def test_rows_of_weights_sum_to_zero(name, method):
    inp = constant_rows(inputs(name, method))
    o, _ = run(name, method, inp)
    assert o.abs().max() < 1e-5
    # control: the same call with values that vary over time must not cancel
    varying = dict(inp, v=inp["v"] * torch.arange(1, inp["v"].shape[1] + 1).view(1, -1, 1, 1))
    o_varying, _ = run(name, method, varying)
    assert o_varying.abs().amax(dim=(0, 2, 3))[1:].min() > 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_state_decay_is_not_zero_sum(method):
    """Control for the test above: decaying the states but not the measure breaks the zero sum."""
    o, _ = run("zeros_mamba2_state", method, constant_rows(inputs("zeros_mamba2_state", method)))
    assert o.abs().amax(dim=(0, 2, 3))[2:].min() > 1e-4


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_first_output_is_zero(name, method):
    inp = inputs(name, method, seed=1)
    o, _ = run(name, method, inp)
    assert o[:, 0].abs().max() < 1e-6
    assert o[:, 1].abs().max() > 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_first_output_of_every_sequence_is_zero(method):
    inp = make_inputs(SPECS["zeros"], 1, None, 2, dtype=torch.float32, seed=2, seqlens=[4, 17, 6])
    o, _ = run("zeros", method, inp)
    starts = inp["cu_seqlens"][:-1]
    assert o[0, starts].abs().max() < 1e-6
    assert o[0, starts + 1].abs().amax(dim=(-1, -2)).min() > 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_constant_logits_give_zero_output(method):
    inp = inputs("zeros", method, seed=3)
    inp["zs_logits"] = torch.full_like(inp["zs_logits"], 0.7)
    o, _ = run("zeros", method, inp)
    assert o.abs().max() < 1e-5


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["zeros", "zeros_retnet", "zeros_mamba2", "zeros_gla"])
def test_logit_shift_changes_nothing(name, method):
    inp = inputs(name, method, seed=4)
    o, (kv, stats) = run(name, method, inp)
    for shift in (50.0, 500.0):
        o_s, (kv_s, stats_s) = run(name, method, dict(inp, zs_logits=inp["zs_logits"] + shift))
        # fp32 logits near 500 carry ~3e-5 absolute rounding; the weights inherit it, nothing more
        tol = 1e-4 if shift == 50.0 else 1e-3
        assert (o_s - o).norm() / o.norm() < tol
        assert (kv_s[:, :, 0] - kv[:, :, 0]).norm() / kv[:, :, 0].norm() < tol  # F~ is relative to m
        assert (kv_s[:, :, 2] - kv[:, :, 2]).norm() / kv[:, :, 2].norm() < 1e-5  # Hs ignores s
        assert torch.allclose(stats_s[..., 2], stats[..., 2] + shift)  # m moves with the logits
