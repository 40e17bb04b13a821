"""ZeroS zero-sum linear attention (zero_sum = true), plain and with the experimental decays.

`lower(spec)` returns three plans (forward, recurrent, backward):
- "forward" (`zeros_forward.py.jinja`): a program per (V block, sequence x head) walks its sequence chunk by
  chunk with the three states (F~, G, Hs) and the statistics (E~, P, m, n) in registers; one decayed q k^T tile
  per chunk serves all three states. Plan axis `algorithm`: "one_pass" writes the outputs in that walk,
  "two_pass" (default) only stores the state entering each chunk and a second kernel computes the outputs in
  parallel over (V block, chunk, head);
- "recurrent" (`zeros_recurrent.py.jinja`): one token at a time; the decode step;
- "backward" (`zeros_bwd.py.jinja`): recompute the chunk states (plan axis `state_dtype`: the chunk states and
  their gradients handed on in the input dtype or fp32), one sequential pass per (V block, sequence x head)
  carrying only the three states' gradients (stored per chunk), then dq, dk and dv in parallel over
  (chunk, head) with the V blocks looped inside (no partial sums), and one scan per (sequence x head) over
  per-token scalars for the statistics' gradients (ds, ds1, dsh, dg, read gate, initial statistics): no torch
  arithmetic between launches.
Every kernel reads q, k, v, g in place through row strides and takes grouped value heads (H = the value heads,
q/k head i_h // G; docs/conventions.md "Heads and strides"); with G > 1 the backward adds one launch that
sums each q/k head's dq, dk over its group.
decay = "delta" with ZeroS is refused by the spec itself.
"""

from __future__ import annotations

import dataclasses

from ...spec import VariantSpec
from ..plan import Axis, KernelPlan, Rule, UnsupportedSpec
from .constants import decay_constants, spec_constants
from .delta import backward_plan, plans

DECAYS = ("none", "fixed", "scalar", "vector")
CHUNK_SIZES = (16, 32, 64, 128)
VECTOR_CHUNK_SIZES = (16, 32, 64)  # the per-channel score tile is built one key column at a time
# the chunk states a state pass hands the next kernel (kv, G centred; forward two_pass and backward): in the input
# dtype or fp32; statistics, initial / final states and the states autograd keeps for "store" are always fp32
STATE_DTYPE = Axis("state_dtype", ("input", "fp32"))
ALGORITHM = Axis("algorithm", ("two_pass", "one_pass"))
BACKWARD_BLOCK_V = 16  # 0 spills in zeros_bwd_dqk (slagen aot, sm_90, bf16, K = V = 128; 32: 24 B)


def constants(spec: VariantSpec) -> dict:
    """The ZeroS modules' SPEC: the shared constants, the decay input, and MEASURE_DECAY ("consistent": the
    statistics E~, P, n decay like the states)."""
    return {**spec_constants(spec), **decay_constants(spec), "MEASURE_DECAY": spec.zero_sum_decay == "consistent"}


def lower(spec: VariantSpec) -> dict[str, KernelPlan]:
    if not spec.zero_sum or spec.decay not in DECAYS:
        raise UnsupportedSpec(f"spec {spec.name!r}: the zeros family serves zero_sum = true with decay in {DECAYS}")
    chunks = VECTOR_CHUNK_SIZES if spec.decay == "vector" else CHUNK_SIZES
    # three [K, BV] states and several [BT, BT] tiles live in registers: 16-wide V blocks, chunk 64 (`slagen aot`,
    # sm_90, bf16, K = V = 128: 0 spills in both forward kernels; 64-token chunks halve the two_pass chunk states,
    # ~1.6 GB of kv in bf16 at B=8 T=4096 H=16). Untimed
    consts = constants(spec)
    result = plans(spec, ("zeros_forward.py.jinja", "zeros_recurrent.py.jinja"), consts, chunks,
                   prefer_chunk=64, prefer_block_v=16, state_tiles=3)
    # the backward: the chunk states, a sequential pass over their gradients per (V block, sequence x head), then
    # dq, dk, dv per (chunk, head) with the V blocks looped inside (8192 CTAs at B=8 T=4096 H=16, chunk 64)
    # (vector decay: chunk 32, the per-channel tiles' column loops hold four [BT, K] tiles: 204 B spilled in
    # zeros_bwd_dqk against ~1.1 KB over three kernels at 64; zeros_mamba2's zeros_bwd_dqk spills 36 B)
    result["backward"] = backward_plan(spec, "zeros_bwd.py.jinja", consts, chunks,
                                       prefer_chunk=32 if spec.decay == "vector" else 64,
                                       prefer_block_v=BACKWARD_BLOCK_V, grads=("q", "k", "v", "g", "zs_logits",
                                                                               "zs_gate1", "zs_gateh", "read_logits",
                                                                               "norm_weight", "initial_state"))
    # two_pass: a sequential state pass, then the outputs in parallel over (V block, chunk, head); one_pass: one
    # program per (V block, sequence x head) walks all chunks (can win at small B * H)
    forward = result["forward"]
    result["forward"] = dataclasses.replace(
        forward, axes=(*forward.axes, ALGORITHM, STATE_DTYPE),
        default={**forward.default, "algorithm": "two_pass", "state_dtype": "input"},
        rules=(Rule(when=(("algorithm", "one_pass"),), require=(("state_dtype", ("input",)),),
                    reason="one_pass hands no chunk states between kernels"),))
    backward = result["backward"]
    result["backward"] = dataclasses.replace(backward, axes=(*backward.axes, STATE_DTYPE),
                                             default={**backward.default, "state_dtype": "input"})
    return result
