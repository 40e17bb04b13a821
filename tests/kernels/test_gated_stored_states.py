"""The gated backward's `states` plan axis: with "store" the forward keeps its per-chunk states and the
backward reads them instead of re-running its state pass. Gradients against float64 autograd of
`slagen.reference` (scalar, vector and fixed decay with SLA gates; varlen; an initial state; forward
chunkings that agree and disagree with the backward's; the one-pass forward), and a count of `bwd_states`
launches that proves the pass is skipped (and is not skipped under "recompute" or after the recurrent forward).
fp32 kernels on CPU tensors under the interpreter.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from gated_bwd_helpers import Launches, assert_grads_close, compiled_bwd, grad_case, kernel_grads, leaves, reference_grads
from gated_helpers import inputs, small_spec

pytestmark = pytest.mark.interpreter
TOL = 1e-4
STORE = {"chunk_size": 16, "block_k": 16, "block_v": 16, "states": "store"}


def op_for(name: str, forward: dict, states: str = "store"):
    return compiled_bwd(name, json.dumps({**STORE, "states": states}, sort_keys=True),
                        json.dumps(forward, sort_keys=True))



def count_state_passes(monkeypatch, op) -> Launches:
    """Count launches of the backward module's state-recompute kernel."""
    names = op.backward_fn.__globals__
    launches = Launches(names["bwd_states"])
    monkeypatch.setitem(names, "bwd_states", launches)
    return launches


# forward configs: the backward's chunking (h handed over), a coarser one and the one-pass algorithm (the
# forward runs its state pass at the backward's chunk size)
CASES = {
    "sla_mamba2": {"chunk_size": 16},
    "sla_retnet_both": {"chunk_size": 32},
    "sla_gla": {"chunk_size": 32, "algorithm": "one_pass", "block_k": 32},
}


@pytest.mark.parametrize("name", list(CASES))
def test_stored_states_gradients_match_reference(monkeypatch, name):
    B, T, H = (1, 37, 2) if "gla" in name else (2, 37, 3)
    ker, want, do, dht = grad_case(name, B, T, H, seed=31)
    op = op_for(name, CASES[name])
    assert op.states_chunk == STORE["chunk_size"]
    launches = count_state_passes(monkeypatch, op)
    assert_grads_close(kernel_grads(op, ker, do, dht), want, TOL)
    assert launches.count == 0, "the store backward re-ran its state pass"


def test_stored_states_varlen(monkeypatch):
    name = "sla_mamba2"
    ker, ref = leaves(*inputs(name, 1, None, 2, seed=32, seqlens=[13, 1, 20]))
    want, do, dht = reference_grads(name, ref)
    op = op_for(name, {"chunk_size": 32})
    launches = count_state_passes(monkeypatch, op)
    assert_grads_close(kernel_grads(op, ker, do, dht), want, TOL)
    assert launches.count == 0


@pytest.mark.parametrize("path", ["recompute", "recurrent_forward"])
def test_state_pass_runs_without_stored_states(monkeypatch, path):
    """The counter sees the pass when there is nothing stored: a recompute backward, or a store backward
    behind the recurrent forward (which has no chunk states to hand over)."""
    name = "sla_mamba2"
    ker, want, do, dht = grad_case(name, 1, 20, 2, seed=33)
    op = op_for(name, {"chunk_size": 16}, "recompute" if path == "recompute" else "store")
    launches = count_state_passes(monkeypatch, op)
    assert_grads_close(kernel_grads(op, ker, do, dht, recurrent=path == "recurrent_forward"), want, TOL)
    assert launches.count == 1


@pytest.mark.parametrize("name", ["sla_mamba2", "sla_gla"])
def test_forward_returns_states_at_the_asked_chunking(name):
    """`forward(..., save_states_chunk=16)` gives the same states whether the forward chunks by 16 (hands
    over its own) or by 32 in one pass (runs the state pass again); row 0 is the initial state."""
    ker, _ = inputs(name, 1, 37, 2, seed=34)
    ker.pop("cu_seqlens", None)
    scale = small_spec(name).head_dim_k ** -0.5
    same = op_for(name, {"chunk_size": 16}).forward_fn(**ker, scale=scale, save_states_chunk=16)
    other = op_for(name, {"chunk_size": 32, "algorithm": "one_pass", "block_k": 32}).forward_fn(
        **ker, scale=scale, save_states_chunk=16)
    assert len(same) == 3 and same[2].shape == (3, 2, 32, 16) and same[2].dtype == torch.float32
    torch.testing.assert_close(other[2], same[2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(same[2][0], ker["initial_state"][0])
    assert len(op_for(name, {"chunk_size": 16}).forward_fn(**ker, scale=scale)) == 2  # convention unchanged


def test_backward_rejects_states_of_another_chunking():
    name = "mamba2"
    ker, _ = inputs(name, 1, 37, 2, seed=35)
    op = op_for(name, {"chunk_size": 32})
    scale = small_spec(name).head_dim_k ** -0.5
    _, _, states = op.forward_fn(**ker, scale=scale, save_states_chunk=32)  # 2 chunks; the backward's 16 make 3
    with pytest.raises(ValueError, match=r"states: expected contiguous float32 \[3, 2, 32, 16\].* \[2, 2, 32, 16\]"):
        op.backward_fn(**ker, scale=scale, do=torch.ones(1, 37, 2, 16), states=states)


def test_generated_package_keeps_states(monkeypatch, tmp_path):
    """A package whose backward configs all store: its autograd call and its custom ops keep the states."""
    from slagen import api
    from slagen.codegen.families import gated

    plan_of = gated.backward_plan
    monkeypatch.setattr(gated, "backward_plan", lambda spec: dataclasses.replace(
        plan_of(spec), default={**plan_of(spec).default, "chunk_size": 16, "states": "store"}))
    name = "sla_mamba2"
    api.build([small_spec(name)], out_dir=str(tmp_path), name="pkg_store")
    package = api.import_package(str(tmp_path / "pkg_store"))
    runtime = package._PACKAGE
    assert runtime._shared_states_chunk(name) == 16  # what its torch custom ops were registered with
    ker, want, do, dht = grad_case(name, 1, 20, 2, seed=36)
    module = runtime.module(name, runtime.choose(name, "backward", ker["q"]))
    assert module.SAVES_STATES and module.CHUNK_SIZE == 16
    launches = Launches(module.bwd_states)
    monkeypatch.setattr(module, "bwd_states", launches)
    assert_grads_close(kernel_grads(getattr(package, name), ker, do, dht), want, TOL)
    assert launches.count == 0
