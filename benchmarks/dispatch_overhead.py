"""CPU-side cost of a generated package's per-call dispatch (guards + bucket choice) against calling the
rendered launcher directly. The launcher itself is replaced by a no-op in both paths, so only the
Python overhead is timed. Target: under 20 us per call.

    python benchmarks/dispatch_overhead.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from slagen.codegen.package import VariantBuild, build_package
from slagen.reference import make_inputs
from slagen.runtime.package import KernelPackage
from slagen.spec import BUILTIN_SPECS


def _time_per_call(fn, calls: int) -> float:
    for _ in range(200):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--variant", default="sla_gla")
    args = parser.parse_args()
    from slagen import env

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not env.interpreter_mode():
        raise SystemExit("dispatch_overhead: no CUDA GPU; set TRITON_INTERPRET=1 to time the dispatch on the CPU "
                         "(without it the package would take its reference path)")
    spec = dataclasses.replace(BUILTIN_SPECS[args.variant], head_dim_k=64, head_dim_v=64)
    with tempfile.TemporaryDirectory() as tmp:
        package = KernelPackage(build_package([VariantBuild(spec)], Path(tmp), "bench_pkg"))
        inputs = {k: v.to(device) for k, v in make_inputs(spec, 2, 256, 4, dtype=torch.float32, seed=0).items()}
        q, k, v = inputs.pop("q"), inputs.pop("k"), inputs.pop("v")
        config_id = package.choose(spec.name, "forward", q)
        module = package.module(spec.name, config_id)
        module.forward = lambda *a, **kw: None  # time the dispatch, not the kernel
        scale = spec.head_dim_k ** -0.5
        direct = _time_per_call(lambda: module.forward(q, k, v, scale=scale, **inputs), args.calls)
        dispatched = _time_per_call(lambda: package.call(spec.name, "forward", q, k, v, **inputs), args.calls)

    report = {"variant": spec.name, "direct_us": round(direct, 2), "dispatch_us": round(dispatched, 2),
              "overhead_us": round(dispatched - direct, 2), "target_us": 20.0}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
