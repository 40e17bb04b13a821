"""Measure one config of one op: render -> compile -> verify against the reference -> time.

Failures of candidates are data: each comes back as a `Measurement` with its status
(`compile_error`, `out_of_resources`, `mismatch`, `timeout`), never as an exception. Only a device fault
(the CUDA context is gone) raises `DeviceFault`, carrying what is needed to reproduce it.

The measure function is injectable (`MeasureFn`): the tuner calls whatever it is given with a
`TrialContext`, so tests drive the search with a deterministic synthetic cost model.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..codegen import ConfigError, KernelConfig, KernelPlan
from ..spec import ProblemShape, VariantSpec
from . import gpu_lock
from .fingerprint import DeviceFingerprint

STATUSES = ("ok", "compile_error", "out_of_resources", "mismatch", "timeout")
FAILURES = STATUSES[1:]
# Which `compile_op` keyword carries the config of each op plan.
CONFIG_ARGUMENT = {"forward": "config", "recurrent": "recurrent_config", "backward": "backward_config"}
# Relative-RMS tolerance of an op's outputs against the fp32 reference, by input dtype.
TOLERANCE = {"float32": 5e-3, "bfloat16": 3e-2, "float16": 1.5e-2}
_FAULT_MARKERS = ("illegal memory access", "unspecified launch failure", "device-side assert",
                  "misaligned address", "illegal instruction", "an illegal")
_OOR_MARKERS = ("out of resource", "outofresources", "shared memory", "too many resources")


class DeviceFault(RuntimeError):
    """The device failed in a way that poisons the process; `reproducer` says how to trigger it again."""

    def __init__(self, message: str, reproducer: dict[str, Any]) -> None:
        super().__init__(f"{message}\nreproduce with: {reproducer}")
        self.reproducer = reproducer


@dataclass(frozen=True)
class TrialContext:
    """Everything one measurement needs."""

    spec: VariantSpec
    plan: KernelPlan
    config: KernelConfig
    shape: ProblemShape
    dtype: str
    device: DeviceFingerprint
    time_limit_s: float | None = None
    seed: int = 0

    def reproducer(self) -> dict[str, Any]:
        return {"spec": self.spec.canonical_json(), "op": self.plan.op, "config": self.config.to_json(),
                "shape": str(self.shape), "dtype": self.dtype, "device": self.device.device_key, "seed": self.seed}


@dataclass(frozen=True)
class Measurement:
    status: str
    median_ms: float | None = None
    p20_ms: float | None = None
    p80_ms: float | None = None
    n_repeats: int = 0
    max_error: float | None = None
    message: str = ""
    wall_s: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status: expected one of {STATUSES}, got {self.status!r}")
        if self.status == "ok" and (self.median_ms is None or not math.isfinite(self.median_ms)):
            raise ValueError(f"median_ms: an ok measurement needs a finite time, got {self.median_ms!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def objective(self) -> float:
        """What the search minimises: the median time, infinite for any failure (as Triton's autotuner)."""
        return self.median_ms if self.ok and self.median_ms is not None else math.inf


MeasureFn = Callable[[TrialContext], Measurement]


@dataclass(frozen=True)
class MeasureSettings:
    warmup_ms: float = 25.0  # triton.testing.do_bench's warm-up and repetition times
    rep_ms: float = 100.0
    cpu_repeats: int = 3  # the interpreter: its times mean nothing, a few runs exercise the path
    verify_seqlen: int = 100  # awkward on purpose: not a multiple of any chunk size
    verify_heads: int = 2
    tolerance: dict[str, float] = field(default_factory=lambda: dict(TOLERANCE))


def classify_failure(err: BaseException) -> str:
    """`compile_error` or `out_of_resources` for an exception raised while building or launching."""
    try:
        from triton.runtime.errors import OutOfResources

        if isinstance(err, OutOfResources):
            return "out_of_resources"
    except ImportError:  # pragma: no cover - triton is a dependency
        pass
    try:
        import torch

        if isinstance(err, torch.OutOfMemoryError):
            return "out_of_resources"
    except (ImportError, AttributeError):  # pragma: no cover
        pass
    text = f"{type(err).__name__}: {err}".lower()
    if any(marker in text for marker in _OOR_MARKERS):
        return "out_of_resources"
    return "compile_error"


def _is_device_fault(err: BaseException) -> bool:
    text = str(err).lower()
    return "cuda" in text and any(marker in text for marker in _FAULT_MARKERS)


def _short(err: BaseException, limit: int = 500) -> str:
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _config_seed(ctx: TrialContext) -> int:
    digest = hashlib.sha256(f"{ctx.seed}:{ctx.config.to_json()}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _call(op: Any, plan: KernelPlan, inputs: dict[str, Any], final_state: bool) -> tuple[Any, Any]:
    # backward: timed as forward + backward through autograd (the forward's config is fixed), so a "store"
    # config pays for the forward keeping its states and a "recompute" one for the extra state pass
    if plan.op == "backward":
        o, _ = op(**_leaves(inputs))
        o.backward(o.detach())
        return o, None
    run = getattr(op, plan.op, None) if plan.op != "forward" else None
    return (run or op)(**inputs, output_final_state=final_state)


def _leaves(inputs: dict[str, Any]) -> dict[str, Any]:
    """Floating inputs as fresh leaves that require grad (g_gamma is a constant; ZeroS states are tuples)."""
    def leaf(name: str, x: Any) -> Any:
        if isinstance(x, tuple):
            return tuple(leaf(name, t) for t in x)
        if name == "g_gamma" or not (hasattr(x, "is_floating_point") and x.is_floating_point()):
            return x
        return x.detach().clone().requires_grad_()
    return {k: leaf(k, v) for k, v in inputs.items()}


def _backward_through(run: Callable[..., Any], inputs: dict[str, Any], final: bool) -> dict[str, Any]:
    """Leaves of `inputs` after `L = sum(o * o) + sum(state * state)` (constants detached) went back
    through `run`: dL/do = o, dL/dfinal_state = final_state."""
    leaves = _leaves(inputs)
    out, state = run(**leaves, output_final_state=final)
    loss = (out.float() * out.detach().float()).sum()
    loss = loss + sum((s * s.detach()).sum() for s in _flatten(state))
    loss.backward()
    return leaves


def _verify_grads(op: Any, ctx: TrialContext, inputs: dict[str, Any]) -> float:
    """Relative-RMS error of every input gradient (dL/do = o, dL/dfinal_state = final_state) against the
    fp32 reference's autograd."""
    from ..reference import attention

    final = ctx.spec.final_state
    errors, grads = [], []
    for run, cast in ((op, lambda x: x), (lambda **kw: attention(ctx.spec, **kw, method="naive"), _fp32)):
        leaves = _backward_through(run, {k: cast(v) for k, v in inputs.items()}, final)
        grads.append({k: [t.grad for t in _flatten(v) if t.grad is not None] for k, v in leaves.items()
                      if k != "cu_seqlens"})
    for name, want in grads[1].items():
        got = grads[0].get(name, [])
        if len(got) != len(want):
            return math.inf
        errors += [_rel_rms(a, b) for a, b in zip(got, want)]
    return max(errors, default=0.0)


def _fp32(x: Any) -> Any:
    if isinstance(x, tuple):
        return tuple(_fp32(t) for t in x)
    return x.float() if hasattr(x, "is_floating_point") and x.is_floating_point() else x


def _rel_rms(actual: Any, expected: Any) -> float:
    a, e = actual.float(), expected.float()
    if a.shape != e.shape:
        return math.inf
    err = (a - e).pow(2).mean().sqrt().item()
    ref = e.pow(2).mean().sqrt().item()
    value = err / max(ref, 1e-12)
    return value if math.isfinite(value) else math.inf


def _flatten(state: Any) -> list[Any]:
    if state is None:
        return []
    if isinstance(state, (tuple, list)):
        return [t for part in state for t in _flatten(part)]
    return [state]


def _verify_inputs(ctx: TrialContext, device: str, settings: MeasureSettings) -> dict[str, Any]:
    import torch

    from ..reference.inputs import make_inputs

    T, H = min(ctx.shape.seqlen, settings.verify_seqlen), min(ctx.shape.heads, settings.verify_heads)
    return make_inputs(ctx.spec, 1, T, H, dtype=getattr(torch, ctx.dtype), device=device, seed=_config_seed(ctx))


def verify(op: Any, ctx: TrialContext, device: str, settings: MeasureSettings) -> float:
    """Relative-RMS error of the op's output (and final state) against the naive reference in fp32."""
    import torch

    from ..reference import attention

    inputs = _verify_inputs(ctx, device, settings)
    if ctx.plan.op == "backward":
        return _verify_grads(op, ctx, inputs)
    final = ctx.spec.final_state
    out, state = _call(op, ctx.plan, dict(inputs), final)
    ref_inputs = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in inputs.items()}
    ref_out, ref_state = attention(ctx.spec, **ref_inputs, output_final_state=final, method="naive")
    errors = [_rel_rms(out, ref_out)]
    got, want = _flatten(state), _flatten(ref_state)
    if final and len(got) != len(want):
        return math.inf
    errors += [_rel_rms(a, b) for a, b in zip(got, want)]
    return max(errors)


def time_calls(fn: Callable[[], Any], settings: MeasureSettings, cuda: bool) -> list[float]:
    """Per-call times in ms: `triton.testing.do_bench` on a GPU (its own estimate sets the repeat count;
    L2 flushed before each run); under the interpreter a few wall-clock runs."""
    if cuda:
        from triton.testing import do_bench

        return list(do_bench(fn, warmup=settings.warmup_ms, rep=settings.rep_ms, return_mode="all"))
    times = []
    for _ in range(max(1, settings.cpu_repeats)):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def summary(times: list[float]) -> dict[str, Any]:
    """Median, p20 and p80 (linear interpolation, as do_bench's `quantiles`) and the number of runs."""
    deciles = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else times * 9
    return dict(median_ms=deciles[4], p20_ms=deciles[1], p80_ms=deciles[7], n_repeats=len(times))


def warm_seqlen(seqlen: int) -> int:
    """A short stand-in for `seqlen` with the same residue mod 64 (so mod 16) and the same `== 1`: the JIT
    specialises integer arguments on those, so kernels compiled for it serve the long run too."""
    return seqlen if seqlen <= 128 else 64 + seqlen % 64


def precompile(op: Any, ctx: TrialContext, settings: MeasureSettings) -> bool:
    """Compile, without running any kernel, what this trial's verification and timing calls launch: the
    same calls on inputs of the same dtype, heads and batch and a short `warm_seqlen`. Tuning workers that
    share a GPU do this in parallel before taking their turn on it (`gpu_lock`). Best effort: False when
    it could not (the interpreter, an older triton): the kernels then compile on their first call."""
    if ctx.device.is_interpreter:
        return False
    import sys

    import torch

    from ..reference.inputs import make_inputs
    from .aot import warm_up

    fns = [getattr(op, name, None) for name in ("forward_fn", "recurrent_fn", "backward_fn")]
    modules = [sys.modules[f.__module__] for f in fns if f is not None and f.__module__ in sys.modules]
    shape, final = ctx.shape, ctx.spec.final_state
    try:
        checking = _verify_inputs(ctx, "cuda", settings)
        timing = make_inputs(ctx.spec, shape.batch, warm_seqlen(shape.seqlen), shape.heads,
                             dtype=getattr(torch, ctx.dtype), device="cuda", seed=ctx.seed)

        def calls() -> None:
            if ctx.plan.op == "backward":
                _backward_through(op, checking, final)
            else:
                _call(op, ctx.plan, dict(checking), final)
            _call(op, ctx.plan, dict(timing), False)

        warm_up(modules, calls)
        return True
    except Exception:  # noqa: BLE001 - only an optimisation: the measurement compiles what is missing
        return False


def measure_op(ctx: TrialContext, settings: MeasureSettings | None = None) -> Measurement:
    """The real measurement on this machine (CUDA, or the CPU interpreter). On a GPU the kernels compile
    first (`precompile`); verifying and timing then hold the GPU's lock, so that workers sharing it never
    overlap their runs."""
    with contextlib.ExitStack() as turn:
        return _measure(ctx, settings or MeasureSettings(), turn)


def _measure(ctx: TrialContext, settings: MeasureSettings, turn: contextlib.ExitStack) -> Measurement:
    import torch

    started = time.perf_counter()
    deadline = started + (ctx.time_limit_s if ctx.time_limit_s is not None else math.inf)
    cuda = not ctx.device.is_interpreter
    device = "cuda" if cuda else "cpu"

    def done(status: str, **fields: Any) -> Measurement:
        return Measurement(status, wall_s=time.perf_counter() - started, **fields)

    def failure(err: BaseException) -> Measurement:
        if cuda and _is_device_fault(err):
            raise DeviceFault(_short(err), ctx.reproducer()) from err
        return done(classify_failure(err), message=_short(err))

    try:
        from ..codegen import render

        render(ctx.plan, ctx.config)  # re-validates: nothing unchecked reaches the template
        from ..jit import compile_op

        argument = CONFIG_ARGUMENT.get(ctx.plan.op)
        if argument is None:
            return done("compile_error", message=f"op {ctx.plan.op!r}: no compile_op argument to tune it with")
        op = compile_op(ctx.spec, **{argument: ctx.config.as_dict()})
        if cuda:
            precompile(op, ctx, settings)  # in parallel with other workers; the rest takes turns on the GPU
            turn.enter_context(gpu_lock.exclusive(ctx.device.device_key))
        error = verify(op, ctx, device, settings)  # the first call compiles what is not compiled yet
    except ConfigError as err:
        return done("compile_error", message=_short(err))
    except Exception as err:  # noqa: BLE001 - a candidate's failure is data
        return failure(err)
    if time.perf_counter() > deadline:
        return done("timeout", max_error=error, message="verification passed the per-trial time limit")
    tolerance = settings.tolerance.get(ctx.dtype, TOLERANCE["float32"])
    if not error <= tolerance:
        return done("mismatch", max_error=error, message=f"relative RMS error {error:.3g} > {tolerance:g}")
    try:
        from ..reference.inputs import make_inputs

        shape = ctx.shape
        inputs = make_inputs(ctx.spec, shape.batch, shape.seqlen, shape.heads, dtype=getattr(torch, ctx.dtype),
                             device=device, seed=ctx.seed)
        times = time_calls(lambda: _call(op, ctx.plan, dict(inputs), False), settings, cuda)
    except Exception as err:  # noqa: BLE001
        return failure(err)
    if time.perf_counter() > deadline:
        return done("timeout", max_error=error, message=f"over the per-trial limit of {ctx.time_limit_s:g} s")
    return done("ok", max_error=error, **summary(times))
