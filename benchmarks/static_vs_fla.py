"""slagen vs fla-core 0.6.0 without a GPU: the kernels each would launch for one problem, compiled for sm_90.

For each op (linear, RetNet, Mamba2, GLA, GDN; forward, backward) both implementations run on meta tensors of the
full shape with every Triton kernel swapped for a recorder (grids, arguments and heuristics computed as on a
GPU, nothing launched) and every host-side torch op counted (a TorchDispatchMode). Each recorded launch is
compiled with `triton.compile(..., GPUTarget("cuda", 90, 32))` in worker processes (registers and spills from
ptxas, shared memory, the SASS instruction mix); an autotuned fla kernel compiles a few of its configs and the
best by (compiles, spills, registers) is reported. MMA FLOPs are counted by running the same launches (the
chosen configs) under Triton's interpreter at B = H = 1 and a shorter T (--flops-seqlen), scaled by B·H·T
(heads and sequences are independent programs; chunked kernels do the same work per chunk). The SLA forms and
ZeroS (no fla counterpart) are recorded and compiled alike and compared with their base variant (BASES).

    nice -n 10 python benchmarks/static_vs_fla.py                     # triton of this venv
    nice -n 10 .venv-triton-3.6.0/bin/python benchmarks/static_vs_fla.py --flops-python .venv/bin/python

Writes benchmarks/results/static-sm90-triton<ver>-<date>.json and static-sm90-<date>.md; compiles are cached
in a JSON file (--cache) so a rerun only compiles what changed. Needs fla-core 0.6.0 and einops installed
(`pip install --no-deps fla-core==0.6.0 einops`).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import datetime
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import static_fla  # noqa: E402
from static_flops import count_flops  # noqa: E402
from static_problems import BASES, FLA_OPS, OPS, fla_call, leaves, problem, slagen_call, slagen_modules  # noqa: E402
from static_report import markdown  # noqa: E402

ARCH = 90
ALLOCATIONS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "detach", "alias",
               "lift_fresh"}


@dataclasses.dataclass
class Launch:
    side: str  # slagen | fla
    kid: str  # fla: module:name; slagen: the kernel's name in its rendered module
    source: str  # slagen: the rendered module; fla: ""
    candidates: list  # [(signature, constexprs, options, ctas, attrs)]
    tensor_bytes: int  # bytes of the distinct tensor arguments (what a launch may read or write)
    wrapped: bool = False  # autotuned or heuristics: the interpreter pass fixes its config


class HostOps(TorchDispatchMode):
    """Counts the torch ops that would run on the GPU between launches, and the bytes they read and write
    (views and allocations are free)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if not func.is_view and name not in ALLOCATIONS and not name.startswith("_has_compatible"):
            seen, total = set(), 0
            for t in _tensors((args, kwargs, out)):
                if id(t) not in seen:
                    seen.add(id(t))
                    total += t.numel() * t.element_size()
            if total:
                self.ops.append((name, total))
        return out


def _tensors(tree: Any):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, (tuple, list)):
        for x in tree:
            yield from _tensors(x)
    elif isinstance(tree, dict):
        for x in tree.values():
            yield from _tensors(x)


class Recorder:
    def __init__(self, obj: Any, sink: list, side: str, source: str = "") -> None:
        self.obj, self.sink, self.side, self.source = obj, sink, side, source

    @property
    def kernel(self) -> Any:  # what launch.meta reads a stand-in's parameters from
        return self.obj

    def __getitem__(self, grid: Any):
        def record(*args: Any, **kwargs: Any) -> None:
            from slagen.tuning.aot import Launch as AotLaunch
            from slagen.tuning.aot import jit_specialization

            jit, found = static_fla.candidates(self.obj, grid, args, kwargs)
            cands = []
            for named, options, ctas in found:  # as the JIT specialises them (constants, divisibility)
                signature, constexprs, attrs = jit_specialization(AotLaunch(jit, named, options), ARCH)
                cands.append((signature, constexprs, options, ctas, attrs))
            seen, total = set(), 0
            for t in _tensors(list(found[0][0].values())):
                if id(t) not in seen:
                    seen.add(id(t))
                    total += t.numel() * t.element_size()
            kid = static_fla.kernel_id(jit) if self.side == "fla" else jit.fn.__name__
            self.sink.append(Launch(self.side, kid, self.source, cands, total, jit is not self.obj))

        return record

def record(op: str, fla_fns: dict, shape: tuple[int, int, int, int]) -> dict:
    """{side: {direction: {"launches": [Launch], "host_ops": [(name, bytes)]}}} for one op on meta tensors."""
    B, T, H, D = shape
    spec, inputs = problem(op, B, T, H, D, torch.bfloat16, "meta")
    scale = D ** -0.5
    out: dict = {}
    fwd_mod, bwd_mod, fwd_src, bwd_src = slagen_modules(spec)
    fresh = lambda: leaves({k: v.clone() for k, v in inputs.items()})  # noqa: E731 - one set of leaves per side
    sides = {"slagen": ([fwd_mod, bwd_mod], slagen_call(fwd_mod, bwd_mod, fresh(), scale),
                        {id(fwd_mod): fwd_src, id(bwd_mod): bwd_src})}
    if op in FLA_OPS:
        sides["fla"] = (static_fla.fla_modules(), fla_call(op, fla_fns, fresh(), scale), {})
    for side, (modules, (forward, backward, inference), sources) in sides.items():
        out[side] = {}
        # "forward" runs under autograd (what a training step launches, residuals for the backward included)
        for direction, fn in (("forward", forward), ("backward", backward), ("inference", inference)):
            sink: list = []
            # slagen's modules: a recorder per module (its source travels with each launch)
            per_module = {id(m): m for m in modules}
            makers = [static_fla.Swapped([m], lambda obj, m=m: Recorder(obj, sink, side, sources.get(id(m), "")))
                      for m in per_module.values()]
            host = HostOps()
            for swap in makers:
                swap.__enter__()
            try:
                with host:
                    fn()
            finally:
                for swap in reversed(makers):
                    swap.__exit__(None, None, None)
            out[side][direction] = {"launches": sink, "host_ops": host.ops}
    return out


def job_key(launch: Launch, cand: tuple) -> str:
    signature, constexprs, options, _, attrs = cand
    src = hashlib.sha256(launch.source.encode()).hexdigest()[:16] if launch.source else ""
    return json.dumps([launch.side, launch.kid, src, signature, constexprs, options, attrs], sort_keys=True,
                      default=str)


def compile_one(payload: dict) -> dict:
    """In a worker process (no TRITON_INTERPRET): one launch config compiled for sm_90."""
    os.environ.pop("TRITON_INTERPRET", None)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    from slagen.tuning import aot

    if payload["side"] == "slagen":
        job = aot.Job(payload["source"], payload["kid"], payload["signature"], payload["constexprs"],
                      payload["options"], payload["attrs"])
        return dataclasses.asdict(aot.compile_job(job, ARCH))
    from triton.compiler import ASTSource

    from slagen.tuning.sass import instruction_mix

    if not getattr(compile_one, "imported", False):
        static_fla.import_fla_as_hopper()
        compile_one.imported = True
    try:
        jit = static_fla.resolve(payload["kid"])
        src = ASTSource(fn=jit, signature=payload["signature"], constexprs=payload["constexprs"],
                        attrs=aot.ast_attrs(payload["attrs"]))
        compiled, (registers, spills) = aot.compile_with_usage(src, ARCH, payload["options"])
    except Exception as err:  # noqa: BLE001 - reported as a failed config
        return dataclasses.asdict(aot.Compiled(payload["kid"], False, error=" ".join(str(err).split())[:500]))
    mix = instruction_mix(compiled.asm["cubin"])
    return dataclasses.asdict(aot.Compiled(payload["kid"], True, shared=int(compiled.metadata.shared),
                                           shared_limit=aot.SHARED_LIMITS[ARCH], registers=registers,
                                           spill_bytes=spills, sass=None if mix is None else dataclasses.asdict(mix)))


def pick(cands: list, most: int) -> list[int]:
    """Indices of at most `most` configs spread over the autotune list (first and last included)."""
    n = len(cands)
    if n <= most or most == 1:
        return list(range(min(n, most)))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def compile_all(recorded: dict, cache_path: Path, workers: int, most: int) -> dict:
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    todo: dict[str, dict] = {}
    for op in recorded.values():
        for side in op.values():
            for direction in side.values():
                for launch in direction["launches"]:
                    for index in pick(launch.candidates, most):
                        key = job_key(launch, launch.candidates[index])
                        if key not in cache and key not in todo:
                            signature, constexprs, options, _, attrs = launch.candidates[index]
                            todo[key] = {"side": launch.side, "kid": launch.kid, "source": launch.source,
                                         "signature": signature, "constexprs": constexprs, "options": options,
                                         "attrs": attrs}
    print(f"compiling {len(todo)} kernel configs for sm_{ARCH} ({len(cache)} cached)", file=sys.stderr)
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {pool.submit(compile_one, payload): key for key, payload in todo.items()}
        for n, future in enumerate(cf.as_completed(futures), 1):
            cache[futures[future]] = future.result()
            print(f"  {n}/{len(todo)} {todo[futures[future]]['kid']}", file=sys.stderr)
            if n % 8 == 0 or n == len(todo):
                cache_path.write_text(json.dumps(cache))
    return cache


def best(launch: Launch, cache: dict, most: int) -> tuple[int, dict]:
    """The compiled config a tuner would keep, judged statically: compiles, fewest spills, fewest registers."""
    tried = [(i, cache[job_key(launch, launch.candidates[i])]) for i in pick(launch.candidates, most)]
    return min(tried, key=lambda t: (not t[1]["ok"], t[1]["spill_bytes"], t[1]["registers"]))

def summarise(recorded: dict, cache: dict, most: int) -> tuple[dict, dict]:
    """Per op, side and direction: the table's numbers; and the interpreter pass's plan (chosen configs)."""
    from slagen.tuning.sass import SassMix

    rows: dict = {}
    chosen: dict = {}
    for op, sides in recorded.items():
        chosen[op] = {}
        for side, directions in sides.items():
            for direction, data in directions.items():
                kernels = []
                for launch in data["launches"]:
                    index, result = best(launch, cache, most)
                    mix = SassMix(**result["sass"]) if result.get("sass") else None
                    kernels.append({"kernel": launch.kid.split(":")[-1], "module": launch.kid.split(":")[0]
                                    if side == "fla" else "", "ctas": launch.candidates[index][3],
                                    "configs_tried": len(pick(launch.candidates, most)),
                                    "configs": len(launch.candidates), "config": launch.candidates[index][1:3],
                                    "ok": result["ok"], "error": result.get("error", ""),
                                    "registers": result["registers"], "spill_bytes": result["spill_bytes"],
                                    "shared": result["shared"], "mma": mix.mma if mix else None,
                                    "mma_types": mix.mma_types if mix else None, "ffma": mix.ffma if mix else None,
                                    "ldl": mix.ldl if mix else None, "stl": mix.stl if mix else None,
                                    "tensor_bytes": launch.tensor_bytes})
                    if side == "fla" and launch.wrapped:
                        chosen[op].setdefault(launch.kid, []).append(index)
                host = data["host_ops"]
                rows.setdefault(op, {}).setdefault(side, {})[direction] = {
                    "launches": len(kernels), "kernels": kernels,
                    "host_ops": len(host), "host_op_names": [n for n, _ in host],
                    "host_bytes": sum(b for _, b in host),
                    "bytes_touched": sum(k["tensor_bytes"] for k in kernels) + sum(b for _, b in host)}
    return rows, chosen

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of {','.join(OPS)}")
    parser.add_argument("--shape", default="8x4096x16x128", help="BxTxHxD (K = V = D)")
    parser.add_argument("--configs", type=int, default=3, help="autotune configs compiled per fla kernel")
    parser.add_argument("--workers", type=int, default=2, help="compile processes")
    parser.add_argument("--cache", default=str(ROOT / ".slagen_cache" / "static_vs_fla.json"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--no-flops", action="store_true", help="skip the interpreter pass (no MMA FLOPs)")
    parser.add_argument("--flops-seqlen", type=int, default=512,
                        help="T of the interpreter pass (B = H = 1), scaled to the shape's B·H·T; a multiple of 64 "
                             "dividing T")
    parser.add_argument("--flops-python", default=sys.executable,
                        help="Python of the interpreter pass (FLOPs do not depend on the compiler; triton 3.6's "
                             "interpreter lacks bf16 scalars: give a venv with a newer triton)")
    parser.add_argument("--flops-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.flops_worker:  # the interpreter pass, in its own process (TRITON_INTERPRET=1)
        plan = json.loads(Path(args.flops_worker).read_text())
        Path(args.flops_worker).write_text(json.dumps(count_flops(plan)))
        return 0
    if args.configs < 1 or args.workers < 1:
        parser.error(f"--configs and --workers: expected at least 1, got {args.configs} and {args.workers}")
    ops = [o for o in args.ops.split(",") if o]
    bad = [o for o in ops if o not in OPS]
    if bad or not ops:
        parser.error(f"--ops: expected a comma-separated subset of {','.join(OPS)}, got {args.ops!r}")
    ops += [BASES[o] for o in ops if o in BASES and BASES[o] not in ops]  # each ratio needs its base
    try:
        shape = tuple(int(x) for x in args.shape.lower().split("x"))
        assert len(shape) == 4 and min(shape) > 0
    except (ValueError, AssertionError):
        parser.error(f"--shape: expected BxTxHxD with positive integers, got {args.shape!r}")
    if args.flops_seqlen < 64 or args.flops_seqlen % 64 or shape[1] % args.flops_seqlen:
        parser.error(f"--flops-seqlen: expected a multiple of 64 dividing T={shape[1]}, got {args.flops_seqlen}")
    os.environ.pop("TRITON_INTERPRET", None)
    import triton

    fla_fns = static_fla.import_fla_as_hopper()  # before any other import of fla: it asks the device once
    import fla
    recorded = {op: record(op, fla_fns, shape) for op in ops}
    cache_path = Path(args.cache).with_name(f"{Path(args.cache).stem}-triton{triton.__version__}.json")
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache = compile_all(recorded, cache_path, args.workers, args.configs)
    rows, chosen = summarise(recorded, cache, args.configs)
    if not args.no_flops:
        plan_path = cache_path.with_name(f"flops-plan-{os.getpid()}.json")
        plan_path.write_text(json.dumps({"shape": shape, "seqlen": args.flops_seqlen, "chosen": chosen}))
        env = dict(os.environ, TRITON_INTERPRET="1")
        subprocess.run([args.flops_python, __file__, "--flops-worker", str(plan_path)], env=env, check=True)
        flops = json.loads(plan_path.read_text())
        plan_path.unlink()
        for op, sides in flops.items():
            for side, directions in sides.items():
                for direction, value in directions.items():
                    rows[op][side][direction]["mma_flops"] = value
    date = datetime.date.today().isoformat()
    failures = sorted({f"{op}.{side}.{d}.{k['kernel']}" for op, sides in rows.items() for side, ds in sides.items()
                       for d, data in ds.items() for k in data["kernels"] if not k["ok"]})
    report = {"date": date, "arch": ARCH, "triton": triton.__version__, "torch": torch.__version__,
              "fla_version": fla.__version__, "shape": shape, "dtype": "bfloat16", "configs_per_fla_kernel":
              args.configs, "flops_seqlen": None if args.no_flops else args.flops_seqlen,
              "flops_triton": None if args.no_flops else subprocess.run(
                  [args.flops_python, "-c", "import triton; print(triton.__version__)"], capture_output=True,
                  text=True).stdout.strip(), "failures": failures,
              "ops": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"static-sm90-triton{triton.__version__}-{date}.json").write_text(json.dumps(report, indent=1) + "\n")
    table = markdown(report)
    (out / f"static-sm90-{date}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
