"""Gated DeltaNet (decay = "delta"): chunked WY/UT forward and the recurrent / decode kernel.

`lower(spec)` returns three plans (forward, recurrent, backward):
- "forward" (`delta_forward.py.jinja`): `algorithm` "parallel" (default; `delta_fwd_parallel.py.jinja`:
  W, U and the decay cumsum per chunk x head, one sequential state pass, the output per chunk x head) or
  "one_pass" (one launch; each program walks its sequence chunk by chunk with the [K, BV] state in
  registers). The chunk's unit lower-triangular system `(I + A)` is inverted in registers: blockwise in the
  parallel form (16 x 16 diagonal blocks by forward substitution, merged by IEEE fp32 products), by forward
  substitution over all BT rows in one_pass (cost O(BT^3) per chunk, which is why chunks stop at 64);
- "recurrent" (`delta_recurrent.py.jinja`): one token at a time; with one or a few tokens it is decode;
- "backward" (`delta_bwd.py.jinja`): `algorithm` "parallel" (default; `delta_bwd_parallel.py.jinja`, six
  launches: W / U per chunk x head and the state recurrence storing h and v_new; dO's intra-chunk share of dv
  (P^T dO', with the epilogue backward) per chunk x head; one reverse pass per (V block, sequence x head)
  storing the state gradients dS and dv2; dq / dW / dk's output-side share per chunk x head; the WY / UT
  backward (dv, dbeta, dk, dg) per chunk x head; a per-token finish for the head gates and casts) or
  "one_pass" (one program per (V block, sequence x head) walking all chunks in reverse with the whole WY / UT
  backward in registers, then the per-token finish; it can win when B H is small). The backward's algorithm
  is its own axis, not the forward's: a parallel forward may feed a one_pass backward. `state_dtype` (parallel:
  h and dS between its kernels in the input dtype, or fp32). The state passes and the per-chunk V loops take
  [K, <= 64] tiles whatever block_v (RMSNorm pins block_v to V for the epilogue only). No arithmetic on the
  host. Its `states` axis trades memory for speed: "recompute" re-runs the state pass from the inputs,
  "store" has the forward keep its per-chunk states (fp32 [NT, H, K, V], at the backward's chunk size) for
  the backward to read (the parallel form then forms v_new = U - W h per chunk instead of the recurrence).
  Its `epilogue_input` ("saved" | "recompute", specs with an RMSNorm or a read gate): the epilogue backward's
  o_raw (o before the epilogue) kept by a training forward (SAVES_OUTPUT; an inference forward writes none),
  or recomputed from h and v_new.
"""

from __future__ import annotations

import dataclasses

from ...spec import VariantSpec
from ..plan import Axis, KernelPlan, Rule, UnsupportedSpec
from .axes import chunk_axis, nearest, next_pow2, pow2_blocks, warps_for_state
from .constants import spec_constants

CHUNK_SIZES = (16, 32, 64)
WARPS = (1, 2, 4, 8)
STAGES = (1, 2, 3)


def constants(spec: VariantSpec) -> dict:
    """The delta modules' SPEC: the shared constants and GATE_MAMBA (delta_gate = "mamba": the kernels compute
    g = -e^{A_log} softplus(a + dt_bias) and beta = sigmoid(b) where they load g and beta, which carry a, b)."""
    return {**spec_constants(spec), "GATE_MAMBA": spec.delta_gate == "mamba"}


def block_v_axis(spec: VariantSpec) -> Axis:
    """The fused RMSNorm needs whole rows of o, which pins block_v to the padded V."""
    if spec.output_norm == "rms":
        return Axis("block_v", (next_pow2(spec.head_dim_v),))
    return Axis("block_v", pow2_blocks(spec.head_dim_v))


def plans(spec: VariantSpec, templates: tuple[str, str], consts: dict, chunks: tuple[int, ...],
          prefer_chunk: int, prefer_block_v: int, state_tiles: int = 1) -> dict[str, KernelPlan]:
    """The forward and recurrent plans of a family whose kernels keep `state_tiles` [K, BV] states per
    program (the recurrent default spreads them over enough warps not to spill)."""
    chunk, block_v = chunk_axis(spec, chunks), block_v_axis(spec)
    recurrent_bv = nearest(block_v, 32)
    warps = warps_for_state(state_tiles * next_pow2(spec.head_dim_k), recurrent_bv,
                            2 if spec.head_dim_k <= 64 else 4, WARPS)
    forward = KernelPlan(
        spec=spec, op="forward", template=templates[0],
        axes=(chunk, block_v, Axis("num_warps", WARPS), Axis("num_stages", STAGES)),
        # 8 warps: at 4 the per-chunk tiles spill registers on sm_90 (`slagen aot`: 840 B/thread for gdn)
        default={"chunk_size": nearest(chunk, prefer_chunk), "block_v": nearest(block_v, prefer_block_v),
                 "num_warps": 8, "num_stages": 2},
        constants=consts)
    recurrent = KernelPlan(
        spec=spec, op="recurrent", template=templates[1],
        axes=(block_v, Axis("num_warps", WARPS), Axis("num_stages", (1, 2))),
        default={"block_v": recurrent_bv, "num_warps": warps, "num_stages": 1},
        constants=consts)
    return {"forward": forward, "recurrent": recurrent}


def backward_plan(spec: VariantSpec, template: str, consts: dict, chunks: tuple[int, ...], prefer_chunk: int,
                  prefer_block_v: int, grads: tuple[str, ...]) -> KernelPlan:
    """The chunked backward: the forward's axes (its own tuning; untimed defaults) and `states`
    (recompute | store the forward's per-chunk states; shared by the delta and zeros families). With "store"
    the forward launcher is asked for its states at the backward's chunk size (both plans take the same
    chunk sizes): it writes them in its own pass when the chunkings agree, and runs its kernel once more
    over the states only otherwise. `grads` names the inputs it differentiates (the module's GRADS, also
    read by `slagen build`)."""
    chunk, block_v = chunk_axis(spec, chunks), block_v_axis(spec)
    return KernelPlan(
        spec=spec, op="backward", template=template,
        axes=(chunk, block_v, Axis("num_warps", WARPS), Axis("num_stages", STAGES),
              Axis("states", ("recompute", "store"))),
        # 8 warps: fewer registers spilled on sm_90 than 4 (`slagen aot`: gdn 4.1 -> 2.8 KB/thread; the
        # rest needs smaller chunks, a speed trade the tuner measures)
        default={"chunk_size": nearest(chunk, prefer_chunk), "block_v": nearest(block_v, prefer_block_v),
                 "num_warps": 8, "num_stages": 1, "states": "recompute"},
        constants={**consts, "GRADS": grads})


# the chunk states the parallel forward hands between its kernels: in the input dtype (fla's choice) or fp32
STATE_DTYPE = Axis("state_dtype", ("input", "fp32"))


def with_algorithms(forward: KernelPlan) -> KernelPlan:
    """The delta forward's `algorithm` axis: "parallel" (per-chunk work over chunks x heads, one sequential
    state pass, a parallel output pass; the default) or "one_pass" (one program per sequence x head x V block
    walking the chunks, which can win when B H is small), and the parallel form's `state_dtype`."""
    return dataclasses.replace(
        forward, axes=(*forward.axes, Axis("algorithm", ("parallel", "one_pass")), STATE_DTYPE),
        default={**forward.default, "algorithm": "parallel", "state_dtype": "input"},
        rules=(Rule(when=(("algorithm", "one_pass"),), require=(("state_dtype", ("input",)),),
                    reason="one_pass hands no chunk states between kernels"),))


def epilogue_input_axis(spec: VariantSpec) -> Axis:
    """Where the epilogue backward (RMSNorm, read gate: it needs o before them) gets that o_raw: "saved" (the
    default; autograd has the forward store it, one [B, T, H, V] tensor in o's dtype, read back instead of
    h and v_new) or "recompute" (from the chunk states h and v_new, nothing kept). A spec without an
    epilogue has nothing to choose."""
    if spec.output_norm == "rms" or spec.uses_read_gate:
        return Axis("epilogue_input", ("saved", "recompute"))
    return Axis("epilogue_input", ("recompute",))


def with_backward_algorithms(backward: KernelPlan) -> KernelPlan:
    """The delta backward's `algorithm` axis: "parallel" (the default; per-chunk work over chunks x heads, two
    sequential passes: the states, then the state gradients) or "one_pass" (one program per sequence x head x
    V block walking the chunks in reverse with the whole WY / UT backward in registers), the parallel
    form's `state_dtype` (h and dS between its kernels) and `epilogue_input`."""
    epilogue = epilogue_input_axis(backward.spec)
    return dataclasses.replace(
        backward, axes=(*backward.axes, Axis("algorithm", ("parallel", "one_pass")), STATE_DTYPE, epilogue),
        default={**backward.default, "algorithm": "parallel", "state_dtype": "input",
                 "epilogue_input": epilogue.choices[0]},
        rules=(Rule(when=(("algorithm", "one_pass"),), require=(("state_dtype", ("input",)),),
                    reason="one_pass keeps its chunk states in fp32"),))


def lower(spec: VariantSpec) -> dict[str, KernelPlan]:
    if spec.decay != "delta" or spec.zero_sum:
        raise UnsupportedSpec(f"spec {spec.name!r}: the delta family serves decay='delta' without zero_sum")
    consts = constants(spec)
    result = plans(spec, ("delta_forward.py.jinja", "delta_recurrent.py.jinja"), consts, CHUNK_SIZES,
                   prefer_chunk=32, prefer_block_v=64)
    result["forward"] = with_algorithms(result["forward"])
    grads = ("q", "k", "v", "g", "beta", "read_logits", "write_logits", "norm_weight", "initial_state")
    if spec.delta_gate == "mamba":
        grads += ("A_log", "dt_bias")
    result["backward"] = backward_plan(spec, "delta_bwd.py.jinja", consts, CHUNK_SIZES, prefer_chunk=32,
                                       prefer_block_v=64, grads=grads)
    result["backward"] = with_backward_algorithms(result["backward"])
    return result
