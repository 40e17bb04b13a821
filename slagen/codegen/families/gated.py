"""The gated family: decay none / fixed / scalar / vector (linear, RetNet, Mamba2, GLA), with SLA head gates,
the fused per-head RMSNorm and qk L2-norm.

`lower(spec)` returns three plans (forward, recurrent, backward):
- "forward": the chunked pass, `algorithm` two_pass (states kernel + output kernel) or one_pass (one launch
  walking the chunks with the state in registers); templates `gated_fwd.py.jinja` (none/fixed/scalar) and
  `gla_fwd.py.jinja` (vector: per-channel decay, sub-chunked so every exponent stays bounded: <= 0 off the
  diagonal sub-blocks, within +-40 (fp16: +-4) of the channel's midpoint on them);
- "recurrent": the step-by-step pass (`gated_recurrent.py.jinja`); with one or a few tokens it is decode;
- "backward": the chunked backward (`gated_bwd.py.jinja`, every decay); `constants["GRADS"]` names the
  gradients it returns. Its `states` axis trades memory for speed: "recompute" re-runs the state pass from
  the inputs, "store" has the forward keep its per-chunk states (fp32 [NT, H, K, V], at the backward's
  chunk size) for the backward to read.
"""

from __future__ import annotations

from ...spec import VariantSpec
from ..plan import Axis, KernelPlan, Rule, UnsupportedSpec
from .axes import MIN_BLOCK, chunk_axis, nearest, next_pow2, pow2_blocks, warps_for_state
from .constants import decay_constants, spec_constants

DECAYS = ("none", "fixed", "scalar", "vector")
CHUNK_SIZES = (16, 32, 64, 128)
SUB_CHUNK = 16  # GLA sub-chunk: the intra-chunk decay is applied per [SUB_CHUNK, SUB_CHUNK] block

# the chunk states h / dh (and the backward's do_raw) handed between kernels: in the input dtype (fla's
# choice: half the bytes for bf16) or fp32; initial and final states, and the states autograd keeps for a
# "store" backward, are always fp32
STATE_DTYPE = Axis("state_dtype", ("input", "fp32"))


def constants(spec: VariantSpec) -> dict:
    """The gated modules' SPEC: the shared constants, the decay input and the gated kernels' own."""
    return {
        **spec_constants(spec),
        **decay_constants(spec),
        "USE_DECAY": spec.decay != "none",
        "VP": max(MIN_BLOCK, next_pow2(spec.head_dim_v)),  # whole o rows in the backward's epilogue (tl.dot: >= 16)
        "BC": SUB_CHUNK,
    }


def block_axes(spec: VariantSpec) -> tuple[Axis, Axis]:
    """block_k / block_v choices. The L2 norm needs whole q/k rows and the RMS norm whole o rows, so those
    specs pin the block to the padded head dim; everything else is tunable."""
    k_blocks = (next_pow2(spec.head_dim_k),) if spec.qk_l2norm else pow2_blocks(spec.head_dim_k)
    v_blocks = (next_pow2(spec.head_dim_v),) if spec.output_norm == "rms" else pow2_blocks(spec.head_dim_v)
    return Axis("block_k", k_blocks), Axis("block_v", v_blocks)


def forward_plan(spec: VariantSpec) -> KernelPlan:
    chunk = chunk_axis(spec, CHUNK_SIZES)
    block_k, block_v = block_axes(spec)
    kp = next_pow2(spec.head_dim_k)
    vector = spec.decay == "vector"
    axes = (
        chunk,
        block_k,
        block_v,
        Axis("num_warps", (2, 4, 8)),
        Axis("num_stages", (1, 2, 3)),
        Axis("algorithm", ("two_pass", "one_pass")),
    )
    axes += (STATE_DTYPE,)
    rules = (
        Rule(when=(("algorithm", "one_pass"),), require=(("block_k", (kp,)),),
             reason="one_pass carries the whole [K, BV] state in registers"),
        Rule(when=(("algorithm", "one_pass"),), require=(("state_dtype", ("input",)),),
             reason="one_pass hands no chunk states between kernels"),
    )
    default = {
        "chunk_size": nearest(chunk, 64),
        "block_k": min(64, block_k.choices[-1]) if len(block_k.choices) > 1 else block_k.choices[0],
        # chunk_output loops over K but recomputes Q K^T once per V block: whole V rows (up to 128) do it once,
        # as fla's chunk_fwd_kernel_o does (`slagen aot`, sm_90, triton 3.6 and 3.9: 0 spills at K = V = 128).
        # GLA keeps 64: its sub-chunked output kernel is tuned apart
        "block_v": (min(64 if vector else 128, block_v.choices[-1]) if len(block_v.choices) > 1
                    else block_v.choices[0]),
        "num_warps": 8,  # 4 spill the output kernel's registers on sm_90 (`slagen aot`: 952 B/thread for linear)
        # GLA's gla_output spills 8 B at 2 stages with triton 3.6 (`slagen aot`, sm_90); 1 stage: none
        "num_stages": 1 if vector else 2,
        "algorithm": "two_pass",
        "state_dtype": "input",
    }
    template = "gla_fwd.py.jinja" if spec.decay == "vector" else "gated_fwd.py.jinja"
    return KernelPlan(spec=spec, op="forward", template=template, axes=axes, default=default,
                      constants=constants(spec), rules=rules)


def recurrent_plan(spec: VariantSpec) -> KernelPlan:
    _, block_v = block_axes(spec)
    warps = Axis("num_warps", (1, 2, 4, 8))
    axes = (block_v, warps, Axis("num_stages", (1, 2)))
    bv = min(32, block_v.choices[-1]) if len(block_v.choices) > 1 else block_v.choices[0]
    default = {
        "block_v": bv,
        "num_warps": warps_for_state(next_pow2(spec.head_dim_k), bv, 4, warps.choices),
        "num_stages": 1,
    }
    return KernelPlan(spec=spec, op="recurrent", template="gated_recurrent.py.jinja", axes=axes,
                      default=default, constants=constants(spec))


def gradient_names(spec: VariantSpec) -> tuple[str, ...]:
    """The call-convention inputs the backward differentiates (g_gamma is a constant: no gradient)."""
    names = ["q", "k", "v"]
    if spec.decay in ("scalar", "vector"):
        names.append("g")
    if spec.uses_read_gate:
        names.append("read_logits")
    if spec.uses_write_gate:
        names.append("write_logits")
    if spec.output_norm == "rms":
        names.append("norm_weight")
    return (*names, "initial_state")


def backward_plan(spec: VariantSpec) -> KernelPlan:
    """Chunk size and blocks are independent of the forward's: with states="store" the forward launcher is
    asked for its states at the backward's chunk size (it hands over its own when the chunkings agree, and
    runs its state pass once more otherwise). Vector decay forms its intra-chunk scores as masked dots relative
    to each channel's midpoint decay, column by column only where that is not exact (strong decays), so its
    chunks stop at 64. The output norm no longer pins block_v: the
    epilogue kernels (read gate or norm: bwd_output_dq, bwd_dkv) always read whole V rows and pick their own K
    blocks (at most block_k; gated_bwd.py.jinja), so block_v only tiles bwd_dqk / bwd_dv of specs without one."""
    vector = spec.decay == "vector"
    chunk = chunk_axis(spec, (16, 32, 64) if vector else CHUNK_SIZES)
    kp = next_pow2(spec.head_dim_k)
    block_k = Axis("block_k", (kp,) if spec.qk_l2norm else pow2_blocks(spec.head_dim_k))
    block_v = Axis("block_v", pow2_blocks(spec.head_dim_v))
    axes = (
        chunk,
        block_k,
        block_v,
        Axis("num_warps", (2, 4, 8)),
        Axis("num_stages", (1, 2, 3)),
        Axis("states", ("recompute", "store")),
        STATE_DTYPE,
    )
    preferred = 32 if vector else 64
    default = {
        "chunk_size": nearest(chunk, preferred),
        # bwd_dqk recomputes dO V^T once per K block and bwd_dv the scores Q K^T once per V block. Without a
        # decay vector: whole K rows (up to 128) and 64-wide V blocks (`slagen aot`, sm_90, triton 3.6 and 3.9,
        # K = V = 128: 0 spills, bwd_dqk 236 registers for mamba2; V blocks of 128 spill 332 B there). GLA keeps
        # 64 / 32: 64-wide V blocks at 4 warps spill bwd_dqk's registers (2.8 KB/thread), 32 at 8 warps none
        "block_k": min(64 if vector else 128, block_k.choices[-1]),
        "block_v": min(32 if vector else 64, block_v.choices[-1]),
        "num_warps": 8,
        "num_stages": 2,
        "states": "recompute",
        "state_dtype": "input",
    }
    return KernelPlan(spec=spec, op="backward", template="gated_bwd.py.jinja", axes=axes, default=default,
                      constants={**constants(spec), "GRADS": gradient_names(spec)})


def lower(spec: VariantSpec) -> dict[str, KernelPlan]:
    if spec.zero_sum or spec.decay not in DECAYS:
        raise UnsupportedSpec(f"spec {spec.name!r}: the gated family serves decay in {DECAYS} without zero_sum")
    return {"forward": forward_plan(spec), "recurrent": recurrent_plan(spec), "backward": backward_plan(spec)}
