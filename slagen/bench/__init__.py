"""`slagen bench`: slagen's compiled op against its peers, in one run, on the same inputs.

For each `BxTxH` shape (K and V from the spec) the inputs come from `slagen.reference.make_inputs`
(random, never zeros). Every implementation is first checked against the float64 reference (relative RMS
of the output on a prefix of the sequence for the first and last batch row: causality makes a prefix a
complete problem; of the gradients on a short separate problem); a mismatch is reported and that row is
not timed. Then forward (inputs that need no grad) and forward+backward (leaf inputs, `o.backward(do)`)
are timed with `triton.testing.do_bench` (median, warm-up, `grad_to_none`, L2 flushed between runs), with
the peak memory each call allocates beyond what was live before it.

Peers (`vs`): `fla` (flash-linear-attention: the matching chunked kernel; SLA as the fla kernel followed by
torch ops; ZeroS as fla's `chunk_simple_gla` on the 3K-wide keys of its linear-attention form),
`sdpa` (torch's causal softmax attention on `[B, H, T, D]`: a different function, for the crossover),
`reference` (slagen.reference, chunked, in the benchmark dtype), `slagen_base` (SLA/ZeroS gates: slagen's
base variant followed by the same torch ops), `authors` (ZeroS: the authors' formulation, prefix sums of
per-token K×V products). A peer that cannot run says why; nothing is dropped silently.

Library code: never prints. Imports torch and triton, never optuna or sqlalchemy.
"""

from __future__ import annotations

import platform
from typing import Any, Callable, Iterable, Sequence

from ..spec import ProblemShape, VariantSpec, parse_shapes
from .measure import InputCache, _bench_shape, rel_rms
from .peers import PEER_BUILDERS, _Context, _guard, _slagen_impl, fla_version
from .results import (CPU_NOTE, DEFAULT_VS, DTYPE_ALIASES, GRAD_FACTOR, PEERS, TOLERANCE, BenchError,
                      BenchReport, PeerResult, ShapeResult, Unavailable)

__all__ = [
    "DEFAULT_VS", "GRAD_FACTOR", "PEERS", "TOLERANCE", "BenchError", "BenchReport", "InputCache", "PeerResult",
    "ShapeResult", "Unavailable", "device_name", "device_slug", "fla_version", "parse_dtype", "parse_peers",
    "peer_callable", "rel_rms", "run_bench", "versions",
]

# --- entry point -------------------------------------------------------------------------------------------

def parse_peers(vs: str | Iterable[str] | None) -> tuple[str, ...]:
    if vs is None:
        return DEFAULT_VS
    items = [p.strip() for p in vs.split(",")] if isinstance(vs, str) else [str(p).strip() for p in vs]
    items = [p for p in items if p]
    for item in items:
        if item not in PEERS:
            raise BenchError(f"--vs: unknown peer {item!r}; expected a comma-separated list drawn from {', '.join(PEERS)}")
    return tuple(dict.fromkeys(items))


def parse_dtype(dtype: str | None, cuda: bool) -> str:
    if dtype is None:
        return "bfloat16" if cuda else "float32"
    name = DTYPE_ALIASES.get(str(dtype).lower())
    if name is None:
        raise BenchError(f"--dtype: expected one of bfloat16, float16, float32, got {dtype!r}")
    return name


def run_bench(spec: VariantSpec, shapes: str | Sequence[ProblemShape], *, vs=None, dtype: str | None = None,
              allow_cpu: bool = False, backward: bool = True, check_seqlen: int = 2048,
              grad_check_seqlen: int = 256, warmup_ms: float = 25.0, rep_ms: float = 100.0, seed: int = 0,
              inputs_cache: "InputCache | None" = None, slagen_op=None,
              compile_op: Callable[..., Any] | None = None) -> BenchReport:
    """Check, then time slagen's op and each peer of `vs` on each shape. See the module docstring.

    `compile_op`: slagen's compiler, `compile_op(spec, shape=, dtype=) -> op` (`slagen.compile`: each shape
    runs the tuning DB's config for its bucket, as a generated package would); the `slagen_base` peer
    needs it too. `slagen_op`: an already compiled op for `spec`, used for every shape instead.
    `inputs_cache`: share inputs between calls on the same shapes (the anchors runner does).
    """
    import torch

    peers = parse_peers(vs)
    problems = parse_shapes(shapes) if isinstance(shapes, str) else list(shapes)
    if not problems:
        raise BenchError("--shapes: expected at least one BxTxH shape")
    cuda = torch.cuda.is_available()
    if not cuda and not allow_cpu:
        raise BenchError("bench: no CUDA GPU is visible, and times taken on the CPU (Triton's interpreter) mean "
                         "nothing; run it on a GPU, or pass --allow-cpu (allow_cpu=True) to exercise the plumbing "
                         "on tiny shapes")
    if slagen_op is None and compile_op is None:
        raise BenchError("compile_op: run_bench needs slagen's compiler (slagen.compile) or a compiled slagen_op")
    dtype_name = parse_dtype(dtype, cuda)
    if dtype_name not in spec.dtypes:
        raise BenchError(f"--dtype: variant {spec.name!r} supports {', '.join(spec.dtypes)}, not {dtype_name}")
    for name, value in (("check_seqlen", check_seqlen), ("grad_check_seqlen", grad_check_seqlen)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BenchError(f"{name}: expected an integer >= 1, got {value!r}")
    device = torch.device("cuda" if cuda else "cpu")
    ctx = _Context(spec=spec, dtype=getattr(torch, dtype_name), dtype_name=dtype_name, device=device,
                   backward=backward, check_seqlen=check_seqlen, grad_check_seqlen=grad_check_seqlen,
                   warmup_ms=warmup_ms, rep_ms=rep_ms, seed=seed, compile_op=compile_op)
    cache = inputs_cache if inputs_cache is not None else InputCache()

    peer_impls = [(peer, _guard(lambda peer=peer: PEER_BUILDERS[peer](ctx))) for peer in peers]
    results = []
    for problem in problems:
        mine = _guard(lambda problem=problem: _slagen_impl(ctx, slagen_op, shape=str(problem)))
        results.append(_bench_shape(ctx, problem, [("slagen", mine), *peer_impls], cache))
    timing = {"method": "triton.testing.do_bench median" if cuda else "time.perf_counter median of 3 (CPU)",
              "warmup_ms": warmup_ms, "rep_ms": rep_ms,
              "forward": "inputs without requires_grad", "forward+backward": "leaf inputs, o.backward(do)",
              "peak_memory": "torch.cuda.max_memory_allocated during one call, minus memory allocated before it"}
    return BenchReport(variant=spec.name, spec_hash=spec.spec_hash, dtype=dtype_name, device=device_name(),
                       meaningful=cuda, note="" if cuda else CPU_NOTE, versions=versions(), timing=timing,
                       shapes=results)


# --- environment -------------------------------------------------------------------------------------------

def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU ({platform.machine()})"


def device_slug() -> str:
    """`nvidia-h100-80gb-hbm3`: the device name for file names."""
    import re

    return re.sub(r"[^a-z0-9]+", "-", device_name().lower()).strip("-") or "unknown"


def versions() -> dict[str, str]:
    import torch

    from .. import __version__

    out = {"slagen": __version__, "python": platform.python_version(), "torch": torch.__version__}
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = "not installed"
    out["fla"] = fla_version() or "not installed"
    if torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
        out["device"] = torch.cuda.get_device_name()
        out["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    return out


def peer_callable(peer: str, spec: VariantSpec, dtype: str = "bfloat16", device=None,
                  compile_op: Callable[..., Any] | None = None) -> tuple[str, Callable]:
    """(impl description, fn(inputs) -> o) of one peer, for scripts that time it their own way
    (benchmarks/cold_start.py). Raises Unavailable with the reason (`slagen_base` needs `compile_op`)."""
    import torch

    (peer,) = parse_peers(peer)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = parse_dtype(dtype, device.type == "cuda")
    ctx = _Context(spec=spec, dtype=getattr(torch, name), dtype_name=name, device=device, backward=True,
                   check_seqlen=1, grad_check_seqlen=1, warmup_ms=0.0, rep_ms=0.0, seed=0, compile_op=compile_op)
    impl = PEER_BUILDERS[peer](ctx)
    return impl.impl, impl.fn
