"""Inputs, float64 expectations, checks and timing for `slagen bench`."""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from typing import Any, Callable, Optional

from ..spec import ProblemShape, VariantSpec
from .peers import Unavailable, _call_kwargs, _Context, _Impl, _short
from .results import DIFFERENTIABLE, GRAD_FACTOR, PER_HEAD, SDPA_CHECK_SEQLEN, TOLERANCE, PeerResult, ShapeResult

# --- inputs ------------------------------------------------------------------------------------------------

class InputCache:
    """Inputs per (input signature, shape, dtype, device, seed), made once by `make_inputs` for the union
    of the inputs related variants need (a variant with a head gate and norm, so that `gla` and `sla_gla`
    share q, k, v, g: make_inputs draws them first, in the same order). Keeps one entry: call `clear()`."""

    def __init__(self) -> None:
        self._key: Any = None
        self._value: Optional[dict] = None

    def get(self, spec: VariantSpec, problem: ProblemShape, dtype, device, seed: int) -> dict:
        from ..reference import make_inputs

        union = dataclasses.replace(spec, head_gate="read" if spec.head_gate == "none" else spec.head_gate,
                                    output_norm="rms")
        key = (spec.head_dim_k, spec.head_dim_v, spec.decay, spec.zero_sum, union.required_inputs(),
               str(problem), str(dtype), str(device), seed)
        if key != self._key:
            self.clear()
            self._value = make_inputs(union, problem.batch, problem.seqlen, problem.heads, dtype=dtype,
                                      device=device, seed=seed)
            self._key = key
        wanted = set(spec.required_inputs()) | {"q", "k", "v"}
        if spec.output_norm == "rms":
            wanted.add("norm_weight")
        return {name: value for name, value in self._value.items() if name in wanted}

    def clear(self) -> None:
        self._key, self._value = None, None


def _slice(inputs: dict, rows: list[int], seqlen: int, dtype=None, requires_grad: bool = False) -> dict:
    """Batch rows `rows`, the first `seqlen` tokens; per-head parameters whole. Fresh leaf tensors."""
    import torch

    index = torch.tensor(rows, device=inputs["q"].device)
    out = {}
    for name, value in inputs.items():
        if name in PER_HEAD:
            part = value
        else:
            part = value.index_select(0, index)[:, :seqlen]
        part = part.detach().to(dtype=dtype if dtype is not None else part.dtype).contiguous()
        out[name] = part.requires_grad_(requires_grad and name in DIFFERENTIABLE)
    return out


def _leaves(inputs: dict) -> dict:
    """Leaf tensors sharing storage with `inputs`, differentiable where the call convention allows."""
    return {name: value.detach().requires_grad_(name in DIFFERENTIABLE) for name, value in inputs.items()}


def _io_bytes(spec: VariantSpec, inputs: dict) -> int:
    q = inputs["q"]
    out = q.shape[0] * q.shape[1] * q.shape[2] * spec.head_dim_v * inputs["v"].element_size()
    return int(sum(t.numel() * t.element_size() for t in inputs.values()) + out)


def rel_rms(got, expected) -> float:
    """‖got − expected‖ / ‖expected‖ in float64; inf when `got` has a NaN or Inf."""
    import torch

    a = got.detach().double().reshape(-1)
    b = expected.detach().double().to(a.device).reshape(-1)
    if not bool(torch.isfinite(a).all()):
        return float("inf")
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


# --- expected values ---------------------------------------------------------------------------------------

def _softmax_reference(x: dict):
    """Causal softmax attention in float64, `[B, T, H, V]` (scale K^-0.5)."""
    import torch

    q, k, v = (x[n].double().transpose(1, 2) for n in ("q", "k", "v"))
    T = q.shape[2]
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2)


class _Expected:
    """Float64 references on the check slices, computed once per shape and only when needed."""

    def __init__(self, ctx: _Context, inputs: dict) -> None:
        self.ctx, self.inputs = ctx, inputs
        B, T = inputs["q"].shape[:2]
        self.rows = sorted({0, B - 1})
        self.check_len = min(T, ctx.check_seqlen)
        self.sdpa_len = min(self.check_len, SDPA_CHECK_SEQLEN)
        self.grad_len = min(T, ctx.grad_check_seqlen)
        self._cache: dict[str, Any] = {}

    def output(self, function: str):
        key = f"out-{function}"
        if key not in self._cache:
            import torch

            from ..reference import attention

            with torch.no_grad():
                if function == "softmax":
                    x = _slice(self.inputs, self.rows, self.sdpa_len, dtype=torch.float64)
                    self._cache[key] = _softmax_reference(x)
                else:
                    x = _slice(self.inputs, self.rows, self.check_len, dtype=torch.float64)
                    self._cache[key] = attention(self.ctx.spec, x["q"], x["k"], x["v"], **_call_kwargs(x),
                                                 method="chunked")[0]
        return self._cache[key]

    def output_len(self, function: str) -> int:
        return self.sdpa_len if function == "softmax" else self.check_len

    def grad_problem(self):
        """(leaf inputs in the benchmark dtype, upstream gradient do) of the short gradient check."""
        if "grad-problem" not in self._cache:
            import torch

            x = _slice(self.inputs, self.rows, self.grad_len, requires_grad=True)
            gen = torch.Generator(device="cpu").manual_seed(self.ctx.seed + 17)
            shape = (*x["q"].shape[:3], self.ctx.spec.head_dim_v)
            do = torch.randn(*shape, generator=gen, dtype=torch.float64).to(device=x["v"].device, dtype=x["v"].dtype)
            self._cache["grad-problem"] = (x, do)
        return self._cache["grad-problem"]

    def grads(self, function: str) -> dict:
        key = f"grad-{function}"
        if key not in self._cache:
            import torch

            x, do = self.grad_problem()
            ref = {n: t.detach().double().requires_grad_(t.requires_grad) for n, t in x.items()}
            if function == "softmax":
                ref = {n: ref[n] for n in ("q", "k", "v")}
                o = _softmax_reference(ref)
            else:
                from ..reference import attention

                o = attention(self.ctx.spec, ref["q"], ref["k"], ref["v"], **_call_kwargs(ref), method="chunked")[0]
            leaves = [t for t in ref.values() if t.requires_grad]
            grads = torch.autograd.grad(o, leaves, do.double(), allow_unused=True)
            names = [n for n, t in ref.items() if t.requires_grad]
            self._cache[key] = dict(zip(names, grads))
        return self._cache[key]


# --- measuring ---------------------------------------------------------------------------------------------

def _sync(ctx: _Context) -> None:
    if ctx.cuda:
        import torch

        torch.cuda.synchronize()


def _free(ctx: _Context) -> None:
    if ctx.cuda:
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


def _time_ms(ctx: _Context, fn: Callable[[], Any], grad_to_none=None) -> float:
    if ctx.cuda:
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=ctx.warmup_ms, rep=ctx.rep_ms, grad_to_none=grad_to_none,
                              return_mode="median"))
    fn()  # warm-up
    samples = []
    for _ in range(3):
        if grad_to_none:
            for t in grad_to_none:
                t.grad = None
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return float(statistics.median(samples))


def _peak_mib(ctx: _Context, fn: Callable[[], Any]) -> Optional[float]:
    """MiB one call allocates at its peak beyond what was live before it (None on the CPU)."""
    if not ctx.cuda:
        return None
    import torch

    _free(ctx)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def _is_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, getattr(torch, "OutOfMemoryError", ())) or "out of memory" in str(err).lower()


def _check_forward(ctx: _Context, impl: _Impl, inputs: dict, expected: _Expected) -> tuple[float, str]:
    """(error, detail) of the forward on the full inputs, compared on the check slice; inf when non-finite."""
    import torch

    with torch.no_grad():
        o = impl.fn(inputs)
        _sync(ctx)
        if tuple(o.shape) != (*inputs["q"].shape[:3], ctx.spec.head_dim_v):
            return float("inf"), f"output shape {tuple(o.shape)}, expected {(*inputs['q'].shape[:3], ctx.spec.head_dim_v)}"
        if not bool(torch.isfinite(o).all()):
            return float("inf"), "output has NaN or Inf"
        length = expected.output_len(impl.function)
        index = torch.tensor(expected.rows, device=o.device)
        got = o.index_select(0, index)[:, :length]
        return rel_rms(got, expected.output(impl.function)), ""


def _check_backward(ctx: _Context, impl: _Impl, expected: _Expected) -> tuple[str, str, Optional[float]]:
    """(bwd_status, reason, worst gradient error) on the short gradient problem."""
    x, do = expected.grad_problem()
    for t in x.values():
        t.grad = None
    o = impl.fn(x)
    if not getattr(o, "requires_grad", False):
        return "n/a", f"{impl.impl}: no autograd (its output does not require grad)", None
    try:
        o.backward(do)
    except Exception as err:  # noqa: BLE001 - a refusal (fla's GDN on Hopper) or a bug: reported
        return "error", f"backward: {_short(err)}", None
    _sync(ctx)
    want = expected.grads(impl.function)
    worst, detail = 0.0, ""
    for name, ref in want.items():
        if ref is None:
            continue
        got = x[name].grad
        if got is None:
            return "mismatch", f"no gradient for {name}", None
        error = rel_rms(got, ref)
        if error > worst or math.isnan(error):
            worst, detail = error, name
    for t in x.values():
        t.grad = None
    tolerance = TOLERANCE[ctx.dtype_name] * GRAD_FACTOR
    if not worst <= tolerance:
        return "mismatch", f"gradient of {detail}: relative RMS {worst:.3g} > {tolerance:.3g}", worst
    return "ok", "", worst


def _bench_one(ctx: _Context, peer: str, get_impl, inputs: dict, expected: _Expected) -> PeerResult:
    import torch

    try:
        impl = get_impl()
    except Unavailable as err:
        return PeerResult(peer, "", "unavailable", str(err))
    base = dict(peer=peer, impl=impl.impl, note=impl.note)
    tolerance = TOLERANCE[ctx.dtype_name]
    try:
        error, detail = _check_forward(ctx, impl, inputs, expected)
    except Exception as err:  # noqa: BLE001
        _free(ctx)
        return PeerResult(**base, status="error", reason=f"forward: {_short(err)}" + (" (out of memory)" if _is_oom(err) else ""))
    if not error <= tolerance:
        reason = detail or f"forward: relative RMS {error:.3g} > {tolerance:.3g} against the float64 reference"
        return PeerResult(**base, status="mismatch", reason=reason, fwd_error=error)

    bwd_status, bwd_reason, grad_error = "skipped", "backward not requested", None
    if ctx.backward:
        try:
            bwd_status, bwd_reason, grad_error = _check_backward(ctx, impl, expected)
        except Exception as err:  # noqa: BLE001
            bwd_status, bwd_reason = "error", f"backward check: {_short(err)}"
        _free(ctx)

    fwd_ms = fwdbwd_ms = peak_fwd = peak_fwdbwd = None
    try:
        with torch.no_grad():
            peak_fwd = _peak_mib(ctx, lambda: impl.fn(inputs))
            fwd_ms = _time_ms(ctx, lambda: impl.fn(inputs))
    except Exception as err:  # noqa: BLE001
        _free(ctx)
        return PeerResult(**base, status="error", reason=f"timing forward: {_short(err)}", fwd_error=error,
                          bwd_status=bwd_status, bwd_reason=bwd_reason, grad_error=grad_error)
    _free(ctx)
    if bwd_status == "ok":
        leaves = _leaves(inputs)
        grad_to_none = [t for t in leaves.values() if t.requires_grad]
        gen = torch.Generator(device="cpu").manual_seed(ctx.seed + 23)
        do = torch.randn(*inputs["q"].shape[:3], ctx.spec.head_dim_v, generator=gen).to(
            device=inputs["v"].device, dtype=inputs["v"].dtype)

        def step():
            impl.fn(leaves).backward(do)

        try:
            peak_fwdbwd = _peak_mib(ctx, step)
            fwdbwd_ms = _time_ms(ctx, step, grad_to_none=grad_to_none)
        except Exception as err:  # noqa: BLE001
            bwd_status, bwd_reason = "error", f"timing forward+backward: {_short(err)}"
        finally:
            for t in grad_to_none:
                t.grad = None
            del leaves, grad_to_none
            _free(ctx)
    return PeerResult(**base, status="ok", fwd_ms=fwd_ms, fwdbwd_ms=fwdbwd_ms, bwd_status=bwd_status,
                      bwd_reason=bwd_reason, fwd_error=error, grad_error=grad_error, peak_fwd_mib=peak_fwd,
                      peak_fwdbwd_mib=peak_fwdbwd)


def _ratio(value: Optional[float], ref: Optional[float]) -> Optional[float]:
    if value is None or ref is None or ref <= 0:
        return None
    return value / ref


def _bench_shape(ctx: _Context, problem: ProblemShape, impls, cache: InputCache) -> ShapeResult:
    spec = ctx.spec
    inputs = cache.get(spec, problem, ctx.dtype, ctx.device, ctx.seed)
    expected = _Expected(ctx, inputs)
    rows = [_bench_one(ctx, peer, get_impl, inputs, expected) for peer, get_impl in impls]
    mine = rows[0]
    rows = [dataclasses.replace(r, fwd_ratio=_ratio(r.fwd_ms, mine.fwd_ms),
                                fwdbwd_ratio=_ratio(r.fwdbwd_ms, mine.fwdbwd_ms)) for r in rows]
    result = ShapeResult(shape=str(problem), batch=problem.batch, seqlen=problem.seqlen, heads=problem.heads,
                         head_dim_k=spec.head_dim_k, head_dim_v=spec.head_dim_v, io_bytes=_io_bytes(spec, inputs),
                         check_seqlen=expected.check_len, grad_check_seqlen=expected.grad_len, rows=rows)
    del expected
    _free(ctx)
    return result
