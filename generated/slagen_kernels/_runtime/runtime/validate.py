"""Checks of the call convention (docs/conventions.md), shared by the reference and the kernel runtime.

Depends only on torch and `slagen.spec`. Every error is a ValueError that names the argument, says what
it got and what was expected, so a user can fix the call from the message alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..spec import VariantSpec

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
STATE_DTYPES = (torch.float32, torch.float64)
# Every optional tensor argument of the call convention, in signature order.
OPTIONAL_TENSORS = ("g", "g_gamma", "beta", "read_logits", "write_logits", "zs_logits", "zs_gate1", "zs_gateh",
                    "norm_weight", "A_log", "dt_bias")


@dataclass(frozen=True)
class CallShape:
    """What a validated call looks like: sizes, and the sequence bounds when `cu_seqlens` is given."""

    batch: int
    seqlen: int
    heads: int  # HV: the value heads (states, v, gates, logits carry them)
    head_dim_k: int
    head_dim_v: int
    seq_bounds: tuple[tuple[int, int], ...] | None = None
    key_heads: int | None = None  # H: the q/k heads (HV = G * H); None means HV

    @property
    def group(self) -> int:
        """G = HV // H: value heads per q/k head (grouped value heads; 1 without)."""
        return 1 if self.key_heads is None else self.heads // self.key_heads

    @property
    def num_states(self) -> int:
        """Rows of the state: one per sequence (varlen) or per batch entry."""
        return len(self.seq_bounds) if self.seq_bounds is not None else self.batch



def default_scale(spec: VariantSpec) -> float:
    """`K^-0.5`, except ZeroS: q̂, k̂ are unit vectors and the zero-sum weights carry the magnitude."""
    return 1.0 if spec.zero_sum else spec.head_dim_k ** -0.5

def _dims(t: torch.Tensor) -> list[int]:
    return list(t.shape)


def _why(spec: VariantSpec, name: str) -> str:
    """The spec field that makes `name` required or forbidden, for error messages."""
    if name in ("g", "g_gamma", "beta"):
        return f"decay={spec.decay!r}"
    if name in ("A_log", "dt_bias"):
        return f"delta_gate={spec.delta_gate!r}"
    if name in ("read_logits", "write_logits"):
        return f"head_gate={spec.head_gate!r}"
    if name.startswith("zs_"):
        return f"zero_sum={spec.zero_sum}"
    if name == "norm_weight":
        return f"output_norm={spec.output_norm!r}"
    if name == "initial_state":
        return f"initial_state={spec.initial_state}"
    if name == "cu_seqlens":
        return f"varlen={spec.varlen}"
    return "the spec"


def expected_shapes(spec: VariantSpec, B: int, T: int, H: int, K: int, V: int) -> dict[str, tuple[list[int], str]]:
    """Shape and its symbolic name for every optional tensor argument; `H` is the number of value heads
    (v.shape[2], HV = G * H with grouped value heads; the symbolic names say H)."""
    bth = ([B, T, H], "[B, T, H]")
    return {
        "g": ([B, T, H, K], "[B, T, H, K]") if spec.decay == "vector" else bth,
        "g_gamma": ([H], "[H]"),
        "beta": bth, "read_logits": bth, "write_logits": bth,
        "zs_logits": bth, "zs_gate1": bth, "zs_gateh": bth,
        "norm_weight": ([V], "[V]"),
        "A_log": ([H], "[H]"), "dt_bias": ([H], "[H]"),
    }


def _check_tensor(name: str, t, device: torch.device, dtypes=FLOAT_DTYPES) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        raise ValueError(f"{name}: expected dtype in {[str(d) for d in dtypes]}, got {t.dtype}")
    if t.device != device:
        raise ValueError(f"{name}: expected a tensor on {device} (the device of q), got one on {t.device}")


def _check_shape(name: str, t: torch.Tensor, want: list[int], symbolic: str, why: str) -> None:
    if _dims(t) != want:
        raise ValueError(f"{name}: expected shape {want} ({symbolic}) for {why}, got {_dims(t)}")


def _check_qkv(spec: VariantSpec, q, k, v) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name}: expected 4 dims ([B, T, H, D]), got shape {_dims(t)}")
    _check_tensor("q", q, q.device)
    for name, t in (("k", k), ("v", v)):
        _check_tensor(name, t, q.device, (q.dtype,))
    B, T, H, K = q.shape
    HV = v.shape[2]
    if q.shape[-1] != spec.head_dim_k:
        raise ValueError(f"q: expected shape [B, T, H, {spec.head_dim_k}] (head_dim_k of spec {spec.name!r}), "
                         f"got {_dims(q)}")
    if _dims(k) != _dims(q):
        raise ValueError(f"k: expected shape {_dims(q)} (the shape of q), got {_dims(k)}")
    # grouped value heads (fla's GVA): HV = G * H value heads, value head j reads q/k head j // G
    want_v = [B, T, HV if HV >= H and HV % H == 0 else H, spec.head_dim_v]
    if _dims(v) != want_v:
        raise ValueError(f"v: expected shape {want_v} ([B, T, HV, V]: HV a multiple of the H={H} heads of q, "
                         f"head_dim_v={spec.head_dim_v}), got {_dims(v)}")


def _check_presence(spec: VariantSpec, given: dict, initial_state, cu_seqlens, output_final_state) -> None:
    required = set(spec.required_inputs())
    allowed = required | set(spec.optional_inputs())
    for name in spec.required_inputs():
        if given.get(name) is None:
            raise ValueError(f"{name}: required for {_why(spec, name)} (spec {spec.name!r}) but not given")
    extra = dict(given, initial_state=initial_state, cu_seqlens=cu_seqlens)
    for name, value in extra.items():
        if value is not None and name not in allowed:
            raise ValueError(f"{name}: not used by spec {spec.name!r} ({_why(spec, name)}); expected None, got a value")
    if not isinstance(output_final_state, bool):
        raise ValueError(f"output_final_state: expected True or False, got {output_final_state!r}")
    if output_final_state and not spec.final_state:
        raise ValueError(f"output_final_state: spec {spec.name!r} has final_state=False; expected False, got True")


def _check_scale(scale) -> None:
    if scale is None:
        return
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"scale: expected None or a finite number, got {scale!r}")


def _check_cu_seqlens(cu_seqlens, B: int, T: int, device) -> tuple[tuple[int, int], ...] | None:
    if cu_seqlens is None:
        return None
    _check_tensor("cu_seqlens", cu_seqlens, device, (torch.int64,))
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens: expected shape [N + 1] with N >= 1, got {_dims(cu_seqlens)}")
    if B != 1:
        raise ValueError(f"cu_seqlens: expected batch size 1 (sequences packed along T), got q with B={B}")
    bounds = cu_seqlens.tolist()  # one host sync; a kernel launcher needs N on the host anyway
    if bounds[0] != 0 or bounds[-1] != T:
        raise ValueError(f"cu_seqlens: expected to start at 0 and end at T={T}, got {bounds}")
    if any(b > e for b, e in zip(bounds[:-1], bounds[1:])):
        raise ValueError(f"cu_seqlens: expected non-decreasing offsets, got {bounds}")
    return tuple(zip(bounds[:-1], bounds[1:]))


def _check_initial_state(spec: VariantSpec, state, N: int, H: int, K: int, V: int, device) -> None:
    if state is None:
        return
    if not spec.zero_sum:
        _check_tensor("initial_state", state, device, STATE_DTYPES)
        _check_shape("initial_state", state, [N, H, K, V], "[N, H, K, V]", f"decay={spec.decay!r}")
        return
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise ValueError("initial_state: expected a tuple (kv [N, H, 3, K, V], stats [N, H, 4]) for zero_sum=True, "
                         f"got {type(state).__name__}")
    kv, stats = state
    _check_tensor("initial_state[0] (kv)", kv, device, STATE_DTYPES)
    _check_shape("initial_state[0] (kv)", kv, [N, H, 3, K, V], "[N, H, 3, K, V]", "zero_sum=True")
    _check_tensor("initial_state[1] (stats)", stats, device, STATE_DTYPES)
    _check_shape("initial_state[1] (stats)", stats, [N, H, 4], "[N, H, 4]", "zero_sum=True")


# Log decays below this are clamped to it by the reference and the kernels alike: e^-128 is 0 in fp32 (and
# 1e-56 in float64), so a clamped step forgets everything, exactly like g = -inf, while cumulative sums of
# log decays stay finite (-inf - -inf would be NaN). `templates/common.py.jinja` holds the same number.
LOG_DECAY_FLOOR = -128.0
# Inputs that are log decays: -inf (forget everything at this step, e.g. at a document boundary) is allowed.
LOG_DECAYS = ("g", "g_gamma")
UNIT_INTERVAL = ("beta", "zs_gate1", "zs_gateh")


def gate_inputs_are_logits(spec: VariantSpec) -> tuple[str, ...]:
    """The inputs that hold pre-activations rather than decays / gates: g (the gate's input a) and beta (its
    logits b) with delta_gate = "mamba"; any finite value is fine there."""
    return ("g", "beta") if spec.delta_gate == "mamba" else ()


def check_value_ranges(given: dict, logits: tuple[str, ...] = ()) -> None:
    """Value ranges: log decays in [-inf, 0], gates in [0, 1], everything else (and the names in `logits`)
    finite. Each check reads the values (a device sync): the reference always runs it; the kernels when
    `env.check_values()` is on."""
    for name, t in given.items():
        if t is None:
            continue
        t = t.detach()
        if name in LOG_DECAYS and name not in logits:
            if bool(torch.isnan(t).any()):
                raise ValueError(f"{name}: expected log-space decays <= 0 (-inf allowed: forget everything), "
                                 "got NaN")
            if bool((t > 0).any()):
                raise ValueError(f"{name}: expected log-space decays <= 0 (-inf allowed: forget everything), "
                                 f"got a maximum of {t.max().item():.4g}")
            continue
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name}: expected finite values, got NaN or Inf")
        if name in UNIT_INTERVAL and name not in logits and bool(((t < 0) | (t > 1)).any()):
            lo, hi = t.min().item(), t.max().item()
            raise ValueError(f"{name}: expected values in [0, 1], got range [{lo:.4g}, {hi:.4g}]")


def validate_inputs(
    spec: VariantSpec, q, k, v, *, g=None, g_gamma=None, beta=None, read_logits=None, write_logits=None,
    zs_logits=None, zs_gate1=None, zs_gateh=None, norm_weight=None, A_log=None, dt_bias=None, scale=None,
    initial_state=None, output_final_state=False, cu_seqlens=None, check_values: bool = True,
) -> CallShape:
    """Check one call against `spec`; return its sizes. Raises ValueError naming the bad argument.

    `check_values` also checks gate ranges and finiteness (a device sync: a kernel runtime may skip it).
    """
    if not isinstance(spec, VariantSpec) and type(spec).__name__ == "VariantSpec":
        spec = VariantSpec.from_dict(spec.to_dict())  # from another copy of the runtime (a generated package's)
    if not isinstance(spec, VariantSpec):
        raise ValueError(f"spec: expected a VariantSpec, got {type(spec).__name__}")
    _check_qkv(spec, q, k, v)
    B, T, HK, K = q.shape
    H, V = v.shape[2], v.shape[3]  # every per-head input and the state carry the HV value heads
    given = dict(zip(OPTIONAL_TENSORS, (g, g_gamma, beta, read_logits, write_logits, zs_logits, zs_gate1, zs_gateh,
                                        norm_weight, A_log, dt_bias)))
    _check_presence(spec, given, initial_state, cu_seqlens, output_final_state)
    shapes = expected_shapes(spec, B, T, H, K, V)
    for name, t in given.items():
        if t is not None:
            _check_tensor(name, t, q.device)
            want, symbolic = shapes[name]
            _check_shape(name, t, want, symbolic, _why(spec, name))
    _check_scale(scale)
    bounds = _check_cu_seqlens(cu_seqlens, B, T, q.device)
    N = len(bounds) if bounds is not None else B
    _check_initial_state(spec, initial_state, N, H, K, V, q.device)
    if check_values:
        check_value_ranges({n: t for n, t in given.items() if n != "norm_weight"}, gate_inputs_are_logits(spec))
    return CallShape(B, T, H, K, V, bounds, HK)
