"""ZeroS forward `algorithm`: the kernel tests run the default "two_pass" (state pass, then the outputs in
parallel over chunks); these run "one_pass" (one walk writes everything) against the same float64 reference,
and check that both hand autograd the same per-chunk states."""

from __future__ import annotations

import pytest
import torch

import slagen
from delta_bwd_helpers import fp32
from gated_helpers import rel_rms
from slagen.codegen import lower
from slagen.reference import attention, make_inputs
from test_zeros_kernels import SPECS

pytestmark = pytest.mark.interpreter


def op_for(name, algorithm):
    return slagen.compile(SPECS[name], {"chunk_size": 16, "block_v": 16, "algorithm": algorithm},
                          recurrent_config={"block_v": 16})


def test_two_pass_is_the_default():
    plan = lower(SPECS["zeros"])["forward"]
    assert plan.default["algorithm"] == "two_pass" and plan.axis("algorithm").choices == ("two_pass", "one_pass")


@pytest.mark.parametrize("name,seqlens", [("sla_zeros", None), ("zeros_gla", None), ("zeros_mamba2", [5, 0, 22, 9])])
def test_one_pass_matches_reference(name, seqlens):
    spec = SPECS[name]
    inp = make_inputs(spec, 2 if seqlens is None else 1, 37 if seqlens is None else None, 2, seed=17,
                      seqlens=seqlens, with_initial_state=True)
    ro, (rkv, rstats) = attention(spec, **inp, output_final_state=True)
    o, (kv, stats) = op_for(name, "one_pass")(**fp32(inp), output_final_state=True)
    errors = [rel_rms(o, ro), rel_rms(kv, rkv), rel_rms(stats, rstats)]
    assert max(errors) < 2e-5, errors


@pytest.mark.parametrize("chunk", [16, 32])
def test_both_algorithms_hand_over_the_same_states(chunk):
    inp = fp32(make_inputs(SPECS["zeros_mamba2"], 2, 37, 2, seed=18, with_initial_state=True))
    one = op_for("zeros_mamba2", "one_pass").forward_fn(**inp, scale=1.0, save_states_chunk=chunk)
    two = op_for("zeros_mamba2", "two_pass").forward_fn(**inp, scale=1.0, save_states_chunk=chunk)
    assert rel_rms(one[0], two[0]) < 1e-5
    for a, b in zip(one[2], two[2]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
