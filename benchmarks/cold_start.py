"""Cold start: seconds from a fresh process with an empty Triton cache to the first forward and the first
backward of a shipped variant (generated/slagen_kernels, tuned tables, no autotuning), and the same for
fla's kernel for that variant when fla is installed (fla autotunes at its first calls).

Each measurement runs in its own child process with TRITON_CACHE_DIR (and SLAGEN_CACHE_DIR) in a fresh
temporary folder. The child times `import`, the first forward, the first backward (synchronised), then
the second forward and backward (already compiled) for contrast. Inputs are made before the clock starts.

    PYTHONPATH=. python benchmarks/cold_start.py                          # retnet, 8x4096x16, slagen and fla
    PYTHONPATH=. python benchmarks/cold_start.py --variant gla --peers slagen,fla --json-out $OUT/cold.json

Prints one line per implementation: import s, first forward s, first backward s, second forward ms,
second backward ms, and how many kernels Triton compiled and found in its cache (a package built with
`slagen build --compile-for h100,h200` ships its kernels compiled: `--package` that package to see them hit).
Needs a CUDA GPU (--allow-cpu runs the slagen child through the interpreter: plumbing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "generated" / "slagen_kernels"


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def child(args) -> dict:
    """Runs in the fresh process: time the first and second forward/backward of one implementation."""
    sys.path.insert(0, str(ROOT))
    out: dict = {"peer": args.child, "variant": args.variant, "shape": args.shape}
    import torch

    from slagen.reference import make_inputs
    from slagen.spec import ProblemShape

    import triton

    compiles = {"compiled": 0, "cache_hits": 0}  # Triton's compilation listener: what the first calls cost

    def listener(src, metadata, metadata_group, times, cache_hit):
        compiles["cache_hits" if cache_hit else "compiled"] += 1

    triton.knobs.compilation.listener = listener
    out["triton_kernels"] = compiles  # a package built with --compile-for this GPU: all cache hits
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device == "cuda" else torch.float32)
    problem = ProblemShape.parse(args.shape)
    t0 = time.perf_counter()
    if args.child == "slagen":
        sys.path.insert(0, str(Path(args.package).resolve().parent))
        package = __import__(Path(args.package).name)
        if args.variant not in package.SPECS:
            raise SystemExit(f"cold_start: {args.variant!r} is not in {args.package} (has {', '.join(package.SPECS)})")
        spec = package.SPECS[args.variant]
        fn = getattr(package, args.variant)
        out["impl"] = f"{Path(args.package).name}.{args.variant}"

        def call(x):
            return fn(x["q"], x["k"], x["v"], **{n: t for n, t in x.items() if n not in ("q", "k", "v")})[0]
    else:
        import slagen
        from slagen.bench import peer_callable

        spec = slagen.load_spec(args.variant)
        out["impl"], call = peer_callable("fla", spec, dtype=str(dtype).replace("torch.", ""))
    out["import_s"] = time.perf_counter() - t0

    inputs = make_inputs(spec, problem.batch, problem.seqlen, problem.heads, dtype=dtype, device=device,
                         seed=0, requires_grad=True)
    if spec.decay == "fixed":
        inputs["g_gamma"].requires_grad_(False)
    inputs = {n: t for n, t in inputs.items()
              if n in set(spec.required_inputs()) | {"q", "k", "v"} | ({"norm_weight"} if spec.output_norm == "rms" else set())}
    do = torch.randn(*inputs["q"].shape[:3], spec.head_dim_v, device=device, dtype=dtype)
    for turn in ("first", "second"):
        for t in inputs.values():
            t.grad = None
        _sync()
        t0 = time.perf_counter()
        o = call(inputs)
        _sync()
        fwd = time.perf_counter() - t0
        if turn == "first":
            out["first_fwd_s"] = fwd
        else:
            out["second_fwd_ms"] = fwd * 1e3
        if not o.requires_grad:
            out["backward"] = "n/a: the output does not require grad (no autograd for this variant)"
            continue
        t0 = time.perf_counter()
        try:
            o.backward(do)
            _sync()
        except Exception as err:  # noqa: BLE001 - e.g. fla's GDN backward refused on Hopper with older triton
            out["backward"] = f"error: {type(err).__name__}: {str(err)[:300]}"
            continue
        bwd = time.perf_counter() - t0
        if turn == "first":
            out["first_bwd_s"] = bwd
        else:
            out["second_bwd_ms"] = bwd * 1e3
    return out


def run_child(peer: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="cold-triton-") as triton_cache, \
            tempfile.TemporaryDirectory(prefix="cold-slagen-") as slagen_cache:
        env = dict(os.environ, TRITON_CACHE_DIR=triton_cache, SLAGEN_CACHE_DIR=slagen_cache,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        command = [sys.executable, str(Path(__file__).resolve()), "--child", peer, "--variant", args.variant,
                   "--shape", args.shape, "--package", args.package] + (["--dtype", args.dtype] if args.dtype else [])
        began = time.perf_counter()
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout_s)
        wall = time.perf_counter() - began
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"peer": peer, "variant": args.variant, "shape": args.shape, "error": " | ".join(tail) or f"exit {proc.returncode}",
                "process_s": wall}
    result = json.loads(lines[-1])
    result["process_s"] = wall
    return result


def _f(value, spec=".2f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="retnet")
    parser.add_argument("--shape", default="8x4096x16", help="BxTxH (K, V from the variant)")
    parser.add_argument("--peers", default="slagen,fla", help="slagen and/or fla")
    parser.add_argument("--package", default=str(PACKAGE), help="the generated package folder")
    parser.add_argument("--dtype", default=None, help="bfloat16 (default on a GPU), float16, float32")
    parser.add_argument("--timeout-s", type=float, default=540.0, help="per child process")
    parser.add_argument("--json-out", default=None, help="also write the results as JSON here")
    parser.add_argument("--allow-cpu", action="store_true", help="no GPU: run through Triton's interpreter (plumbing)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return 0

    import torch

    if not torch.cuda.is_available():
        if not args.allow_cpu:
            parser.error("no CUDA GPU is visible: run this on the GPU machine (--allow-cpu: interpreter, plumbing only)")
        os.environ.setdefault("TRITON_INTERPRET", "1")
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    bad = [p for p in peers if p not in ("slagen", "fla")]
    if bad:
        parser.error(f"--peers: unknown {bad}; expected slagen and/or fla")
    results = []
    for peer in peers:
        if peer == "fla":
            from importlib.util import find_spec

            if find_spec("fla") is None:
                results.append({"peer": "fla", "variant": args.variant, "shape": args.shape,
                                "error": "fla is not installed (carry the fla-core wheel: benchmarks/README.md)"})
                continue
        print(f"cold start: {peer} {args.variant} {args.shape} (fresh process, empty Triton cache) ...", flush=True)
        results.append(run_child(peer, args))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (interpreter: not meaningful)"
    print(f"\ncold start on {device}: {args.variant} {args.shape}")
    print(f"{'impl':<8} {'import s':>9} {'1st fwd s':>10} {'1st bwd s':>10} {'2nd fwd ms':>11} {'2nd bwd ms':>11} "
          f"{'process s':>10}  note")
    for r in results:
        note = r.get("error") or r.get("backward") or f"{r.get('impl', '')} triton kernels: {r.get('triton_kernels')}"
        print(f"{r['peer']:<8} {_f(r.get('import_s')):>9} {_f(r.get('first_fwd_s')):>10} {_f(r.get('first_bwd_s')):>10} "
              f"{_f(r.get('second_fwd_ms'), '.3f'):>11} {_f(r.get('second_bwd_ms'), '.3f'):>11} {_f(r.get('process_s')):>10}  "
              f"{note}")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"device": device, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
