"""Host-side helpers that rendered launchers import: sequence/chunk tables, output allocation, poisoning.

torch and triton only (plus slagen.env for the poison knob).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

import torch
import triton

from .. import env


class Sequences(NamedTuple):
    """How the flattened token axis splits into independent sequences and chunks.

    Without cu_seqlens the rows are B sequences of length T (the kernels derive everything from T, so the
    tables are None); with it, `chunk_indices[i] = (sequence, chunk within it)` for each global chunk `i`
    (int32 [NT, 2]) and `chunk_offsets[n]` is the first global chunk of sequence `n` (int32 [N + 1]).
    """

    N: int  # number of sequences (state rows)
    NT: int  # number of chunks over all sequences
    cu_seqlens: Optional[torch.Tensor]
    chunk_indices: Optional[torch.Tensor]
    chunk_offsets: Optional[torch.Tensor]

    @property
    def is_varlen(self) -> bool:
        return self.cu_seqlens is not None


def sequences(B: int, T: int, BT: int, cu_seqlens: Optional[torch.Tensor]) -> Sequences:
    """Chunk tables for chunk size BT. With cu_seqlens this reads the lengths on the host (one sync)."""
    if cu_seqlens is None:
        return Sequences(B, B * triton.cdiv(T, BT), None, None, None)
    lens = (cu_seqlens[1:] - cu_seqlens[:-1]).to(torch.int64)
    n_chunks = (lens + BT - 1) // BT
    offsets = torch.cat([n_chunks.new_zeros(1), n_chunks.cumsum(0)])
    NT = int(offsets[-1].item())
    seq_of_chunk = torch.repeat_interleave(torch.arange(len(lens), device=lens.device), n_chunks)
    chunk_in_seq = torch.arange(NT, device=lens.device) - offsets[seq_of_chunk]
    indices = torch.stack([seq_of_chunk, chunk_in_seq], dim=1).to(torch.int32).contiguous()
    return Sequences(len(lens), NT, cu_seqlens, indices, offsets.to(torch.int32).contiguous())


def num_sequences(B: int, cu_seqlens: Optional[torch.Tensor]) -> int:
    return B if cu_seqlens is None else cu_seqlens.numel() - 1


def _poison(t: torch.Tensor) -> torch.Tensor:
    if env.poison_outputs():
        t.fill_(float("nan"))
    return t


def new_output(shape, like: torch.Tensor) -> torch.Tensor:
    """An output in `like`'s dtype and device (NaN-filled under SLAGEN_POISON_OUTPUTS=1)."""
    return _poison(torch.empty(shape, dtype=like.dtype, device=like.device))


def new_state(shape, like: torch.Tensor, needed: bool = True) -> Optional[torch.Tensor]:
    """An fp32 state buffer (NaN-filled under SLAGEN_POISON_OUTPUTS=1), or None when not needed."""
    if not needed:
        return None
    return _poison(torch.empty(shape, dtype=torch.float32, device=like.device))


def new_chunk_states(shape, like: torch.Tensor, state_dtype: str) -> torch.Tensor:
    """The per-chunk states (h, dh) one kernel hands the next: in `like`'s dtype for state_dtype "input",
    fp32 for "fp32" (the plan axis `state_dtype`). Kernels read them as fp32 and store in the buffer's dtype."""
    dtype = like.dtype if state_dtype == "input" else torch.float32
    return _poison(torch.empty(shape, dtype=dtype, device=like.device))


def stored_states(states: Any, shape: tuple) -> Any:
    """The forward's per-chunk states handed to a backward, checked against the backward's chunking: one
    fp32 tensor of `shape` ([NT, H, K, V]), or, when `shape` is a tuple of shapes, a tuple of such tensors
    (ZeroS: kv [NT, H, 3, K, V], stats [NT, H, 4]), returned as a tuple."""
    if shape and isinstance(shape[0], (tuple, list)):
        parts = tuple(states) if isinstance(states, (tuple, list)) else (states,)
        if len(parts) != len(shape):
            raise ValueError(f"states: expected a tuple of {len(shape)} tensors "
                             f"{' and '.join(str(list(s)) for s in shape)}, got {len(parts)}")
        return tuple(_stored_part(f"states[{i}]", p, s) for i, (p, s) in enumerate(zip(parts, shape)))
    return _stored_part("states", states, shape)


def _stored_part(name: str, states: Any, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(states, torch.Tensor):
        raise TypeError(f"{name}: expected a contiguous float32 tensor {list(shape)}, got {type(states).__name__}")
    if tuple(states.shape) != tuple(shape) or states.dtype != torch.float32 or not states.is_contiguous():
        note = "" if states.is_contiguous() else " (non-contiguous)"
        raise ValueError(f"{name}: expected contiguous float32 {list(shape)} (the states entering each chunk at "
                         f"the backward's chunk size), got {states.dtype} {list(states.shape)}{note}")
    return states


def saved_output(o_raw: Optional[torch.Tensor], v: torch.Tensor) -> Optional[torch.Tensor]:
    """The forward's output before its epilogue (o_raw) handed to a backward, or None (the backward recomputes
    it): contiguous, in o's dtype and shape (v's)."""
    if o_raw is None:
        return None
    if not isinstance(o_raw, torch.Tensor):
        raise TypeError(f"o_raw: expected a contiguous {v.dtype} tensor {list(v.shape)}, got {type(o_raw).__name__}")
    if o_raw.shape != v.shape or o_raw.dtype != v.dtype or not o_raw.is_contiguous():
        note = "" if o_raw.is_contiguous() else " (non-contiguous)"
        raise ValueError(f"o_raw: expected contiguous {v.dtype} {list(v.shape)} (the forward's output before its "
                         f"epilogue), got {o_raw.dtype} {list(o_raw.shape)}{note}")
    return o_raw


def heads_pow2(H: int) -> int:
    """The head axis padded to a power of two (the SLA gate softmax loads [rows, HP] logits)."""
    return triton.next_power_of_2(H)


LAUNCH_OPTIONS = ("num_warps", "num_stages", "enable_fp_fusion")
# Pinned for every launch: a*b+c contracted to FFMA, the default up to triton 3.9 (3.10 turns it off unless
# asked), so a triton upgrade changes neither the kernels' numerics nor their instruction count
# (the interpreter ignores the option).
LAUNCH_DEFAULTS = {"enable_fp_fusion": True}


def dot_operands(x: torch.Tensor) -> str:
    """The operand dtype of every `tl.dot` (the kernels' constexpr DOT), decided here once from the input `x`:
    fp16 / bf16 inputs feed the tensor cores in their own dtype with fp32 accumulation, fp32 inputs keep fp32:
    "fp32" (TF32 on the GPU), "fp32_tf32x3" or "fp32_ieee" as SLAGEN_FP32_PRECISION asks (env.fp32_precision;
    Triton's input_precision). Under Triton's interpreter (TRITON_INTERPRET=1, how CPU tensors run) bf16 is "bf16_fp32":
    operands rounded to bf16 and widened to fp32, because the interpreter multiplies the raw uint16 bits of
    bfloat16 dot operands (triton #11584); a product of two bf16 values is exact in fp32, so the CPU result is
    what a bf16 MMA computes, up to the order of accumulation."""
    if x.dtype == torch.float16:
        return "fp16"
    if x.dtype == torch.bfloat16:
        return "bf16_fp32" if env.interpreter_mode() else "bf16"
    precision = env.fp32_precision()
    return "fp32" if precision == "tf32" else f"fp32_{precision}"


def flags(x: torch.Tensor, norm_weight: Optional[torch.Tensor] = None, initial_state: Any = None,
          output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None,
          v: Optional[torch.Tensor] = None) -> dict[str, Any]:
    """The per-call constexprs of the call convention (docs/conventions.md), from `x` [B, T, H, *] (q or k)
    and the optional inputs: a third block for `meta`, beside the module's SPEC and CONFIG.
    With `v` (grouped value heads): `H` is v's head count HV, `G = HV // x.shape[2]` (value heads per q/k
    head); without it H is x's and G is 1."""
    H = x.shape[2] if v is None else v.shape[2]
    return dict(H=H, HP=heads_pow2(H), G=H // x.shape[2], USE_NORM_WEIGHT=norm_weight is not None,
                USE_INITIAL_STATE=initial_state is not None, STORE_FINAL_STATE=output_final_state,
                IS_VARLEN=cu_seqlens is not None, DOT=dot_operands(x))


def row_stride(x: Optional[torch.Tensor]) -> int:
    """The token-row stride of a per-token input [B, T, ...] read in place (`in_place(x)`): element (b, t, ...)
    sits at row b * T + t of it, `row_stride` elements apart (0 for None)."""
    if x is None:
        return 0
    B, T = x.shape[0], x.shape[1]
    return int(x.stride(1) if T > 1 or B == 1 else x.stride(0))


def in_place(x: torch.Tensor) -> bool:
    """True when the kernels can read `x` [B, T, *inner] through `row_stride`: the inner dims contiguous
    (unit stride on the last), and the batch rows T token rows apart (any stride when B == 1: varlen).
    Dims of size 1 may have any stride, as for `is_contiguous`."""
    if x.dim() < 2:
        return x.is_contiguous()
    step = 1
    for d in range(x.dim() - 1, 1, -1):
        if x.shape[d] != 1 and x.stride(d) != step:
            return False
        step *= x.shape[d]
    B, T = x.shape[0], x.shape[1]
    return B == 1 or T == 1 or x.stride(0) == T * x.stride(1)


def strides(**tensors: Optional[torch.Tensor]) -> dict[str, int]:
    """`stride_<name>` = row_stride for each named input: a block for `meta` (a kernel takes the ones it
    declares), e.g. launch.strides(q=q, k=k, v=v, g=g, beta=beta)."""
    return {f"stride_{name}": row_stride(t) for name, t in tensors.items()}


def meta(kernel: Any, *blocks: Mapping[str, Any], **call: Any) -> dict[str, Any]:
    """The keyword arguments of one launch: from the blocks (a rendered module's SPEC and CONFIG, the call's
    `flags`), the constexprs `kernel` declares (each flag is decided once, each kernel takes what it needs)
    and the launch options; then `call`, values for this launch only, which must be parameters of the kernel
    and win over the blocks.
    Stand-ins that wrap a kernel (counters, the ahead-of-time recorder) hold it as `.kernel`."""
    jit = kernel
    while not hasattr(jit, "arg_names"):
        jit = jit.kernel
    names = set(jit.arg_names)
    unknown = sorted(set(call) - names - set(LAUNCH_OPTIONS))
    if unknown:
        raise TypeError(f"{jit.fn.__name__}: no parameter {unknown[0]!r}; it takes {sorted(names)}")
    merged = dict(LAUNCH_DEFAULTS)
    merged.update({k: v for block in blocks for k, v in block.items() if k in names or k in LAUNCH_OPTIONS})
    merged.update(call)
    return merged
