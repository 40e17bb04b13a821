"""ANCHORS.md's comparison in one run on one GPU: slagen against fla, torch SDPA and the naive compositions.

Groups (all by default; `--groups` picks):
  base       linear, retnet, mamba2, gla, gdn vs fla (and SDPA once per shape)
  sla        sla_* vs fla's base kernel + torch ops (RMSNorm, softmax over heads, multiply) and vs slagen's own
             base kernel + the same torch ops
  zeros      ZeroS (H=8, K=V=64, B=1, T=2048/4096) vs the authors' formulation (time + peak memory), vs fla's
             chunk_simple_gla on the 3K-wide keys, vs SDPA; and slagen's plain linear attention on the same shapes
  crossover  one variant (retnet) and SDPA at T = 1K..64K with B·T fixed: the crossover, and forward time
             against the memory floor (bytes of q, k, v, gates and o over the copy bandwidth measured in this run)

Every row is checked against the float64 reference before it is timed (slagen.bench). Results go to
`OUT_DIR/<gpu-slug>-<date>.json` (device, versions, date, ceilings, every row), rewritten after each
variant so a run cut short keeps what it measured, with a plot of time vs T (matplotlib, if installed);
the ratios table is printed last.

    PYTHONPATH=. python benchmarks/run_anchors.py                       # the anchors, all groups
    PYTHONPATH=. python benchmarks/run_anchors.py --quick               # smoke run, small shapes
    PYTHONPATH=. python benchmarks/run_anchors.py --groups base --variants retnet,gla --shapes prod
    PYTHONPATH=. python benchmarks/run_anchors.py --quick --allow-cpu   # CPU plumbing check (interpreter)

Needs torch, triton and slagen (jinja2) only; fla-core when carried. Never imports optuna or sqlalchemy.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GROUPS = ("base", "sla", "zeros", "crossover")
BASE_VARIANTS = ("retnet", "linear", "mamba2", "gla", "gdn")  # retnet first: it carries the SDPA row
SLA_VARIANTS = ("sla_retnet", "sla_linear", "sla_mamba2", "sla_gla", "sla_gdn")
# (B, T, H, D) with K = V = D
ANCHOR_SHAPES = ((8, 4096, 16, 128), (2, 16384, 16, 128))
PROD_SHAPES = ((1, 8192, 96, 128), (2, 16384, 16, 128), (4, 2048, 16, 128), (4, 4096, 64, 128),
               (8, 2048, 32, 256), (8, 1024, 8, 64), (8, 4096, 16, 128))
ZEROS_SHAPES = ((1, 2048, 8, 64), (1, 4096, 8, 64))
CROSSOVER_TOKENS, CROSSOVER_T, CROSSOVER_H, CROSSOVER_D = 65536, (1024, 2048, 4096, 8192, 16384, 32768, 65536), 16, 128
QUICK = {"shapes": ((2, 1024, 8, 64),), "zeros": ((1, 1024, 8, 64),), "tokens": 8192, "T": (1024, 4096),
         "base": ("retnet", "gla"), "sla": ("sla_gla",), "warmup_ms": 5.0, "rep_ms": 20.0}
CPU_QUICK = {"shapes": ((1, 32, 2, 16),), "zeros": ((1, 32, 2, 16),), "tokens": 64, "T": (16, 32),
             "base": ("retnet",), "sla": ("sla_retnet",), "warmup_ms": 0.0, "rep_ms": 1.0}


def parse_shape_list(text: str) -> tuple[tuple[int, int, int, int], ...]:
    if text == "anchor":
        return ANCHOR_SHAPES
    if text == "prod":
        return PROD_SHAPES
    out = []
    for part in text.split(","):
        fields = part.strip().lower().split("x")
        if len(fields) != 4 or not all(f.isdigit() and int(f) > 0 for f in fields):
            raise SystemExit(f"run_anchors: error: --shapes: expected anchor, prod or BxTxHxD,... (D = K = V), got {part!r}")
        out.append(tuple(int(f) for f in fields))
    return tuple(out)


def shape_text(b: int, t: int, h: int, d: int) -> str:
    return f"{b}x{t}x{h}x{d}"


# --- ceilings ----------------------------------------------------------------------------------------------

def _copy_ms(do_bench) -> tuple[float, int]:
    import torch

    src = torch.randn(256 * 2**20, device="cuda")  # 1 GiB of fp32, random
    dst = torch.empty_like(src)
    return do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median"), 2 * src.numel() * 4


def _matmul_ms(do_bench, n: int) -> float:
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    return do_bench(lambda: a @ b, warmup=25, rep=200, return_mode="median")


def measure_ceilings() -> dict:
    """Device copy bandwidth (bytes read + written) and bf16 matmul rate, measured here, now."""
    import torch
    from triton.testing import do_bench

    ms, nbytes = _copy_ms(do_bench)
    out = {"copy_bytes": nbytes, "copy_ms": ms, "copy_tb_s": nbytes / (ms * 1e-3) / 1e12}
    n = 8192
    out["matmul_bf16_tflop_s"] = 2 * n**3 / (_matmul_ms(do_bench, n) * 1e-3) / 1e12
    torch.cuda.empty_cache()
    return out


# --- the run -----------------------------------------------------------------------------------------------

class Runner:
    def __init__(self, args, out_path: Path, meta: dict) -> None:
        from slagen.bench import InputCache

        self.args, self.out_path, self.meta = args, out_path, meta
        self.rows: list[dict] = []
        self.skipped: list[str] = []
        self.start = time.monotonic()
        self.cache = InputCache()

    def over_budget(self) -> bool:
        return self.args.budget_s is not None and time.monotonic() - self.start > self.args.budget_s

    def spec(self, name: str, d: int):
        import slagen

        return dataclasses.replace(slagen.load_spec(name), head_dim_k=d, head_dim_v=d)

    def bench(self, group: str, name: str, shapes, vs: str, *, row_name: str | None = None):
        """One variant over shapes of one head dim at a time; rows appended and the JSON rewritten."""
        import slagen
        from slagen.bench import run_bench

        by_d: dict[int, list] = {}
        for b, t, h, d in shapes:
            by_d.setdefault(d, []).append((b, t, h))
        for d, bth in by_d.items():
            label = f"{group}/{row_name or name} D={d} {','.join(f'{b}x{t}x{h}' for b, t, h in bth)} vs {vs}"
            if self.over_budget():
                self.skipped.append(label)
                print(f"  skipped (budget): {label}", flush=True)
                continue
            print(f"  {label} ...", flush=True)
            spec = self.spec(name, d)
            began = time.monotonic()
            try:
                from slagen.spec import ProblemShape

                report = run_bench(spec, [ProblemShape(b, t, h) for b, t, h in bth], vs=vs, dtype=self.args.dtype,
                                   allow_cpu=self.args.allow_cpu, backward=not self.args.forward_only, warmup_ms=self.args.warmup_ms,
                                   rep_ms=self.args.rep_ms, inputs_cache=self.cache,
                                   compile_op=slagen.compile)
            except Exception as err:  # noqa: BLE001 - one failing variant must not lose the others
                print(f"  FAILED: {type(err).__name__}: {err}", flush=True)
                self.rows.append({"group": group, "variant": row_name or name, "shape": f"D={d}", "peer": "slagen",
                                  "status": "error", "reason": f"{type(err).__name__}: {err}"})
                self.write()
                continue
            self.meta.setdefault("dtype", report.dtype)
            bw = (self.meta.get("ceilings") or {}).get("copy_tb_s")
            for shape in report.shapes:
                for r in shape.rows:
                    row = {"group": group, "variant": row_name or name, "spec_hash": report.spec_hash,
                           "shape": f"{shape.shape}x{d}", "B": shape.batch, "T": shape.seqlen, "H": shape.heads,
                           "D": d, "io_bytes": shape.io_bytes, **dataclasses.asdict(r)}
                    row["floor_ms"] = shape.io_bytes / (bw * 1e12) * 1e3 if bw else None
                    row["fwd_over_floor"] = (r.fwd_ms / row["floor_ms"]) if r.fwd_ms and row["floor_ms"] else None
                    self.rows.append(row)
            print(f"  ... {time.monotonic() - began:.1f} s", flush=True)
            self.write()

    def write(self) -> None:
        data = {**self.meta, "elapsed_s": round(time.monotonic() - self.start, 1), "skipped_for_budget": self.skipped,
                "rows": self.rows}
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str))
        tmp.replace(self.out_path)


def run_groups(runner: Runner, args, quick: dict | None) -> None:
    shapes = quick["shapes"] if quick else parse_shape_list(args.shapes)
    wanted = set(args.variants.split(",")) if args.variants else None

    def pick(names):
        return [n for n in names if wanted is None or n in wanted]

    base = pick(quick["base"] if quick else BASE_VARIANTS)
    sla = pick(quick["sla"] if quick else SLA_VARIANTS)
    if "base" in args.groups:
        print("== base variants vs fla (SDPA once per shape)", flush=True)
        for i, name in enumerate(base):
            runner.bench("base", name, shapes, "fla,sdpa" if i == 0 else "fla")
    if "sla" in args.groups:
        print("== SLA variants vs fla + torch ops and vs slagen's base + torch ops", flush=True)
        for name in sla:
            runner.bench("sla", name, shapes, "fla,slagen_base")
    if "zeros" in args.groups:
        print("== ZeroS vs the authors' formulation, fla on 3K-wide keys, SDPA; slagen's plain linear", flush=True)
        zshapes = quick["zeros"] if quick else ZEROS_SHAPES
        runner.bench("zeros", "zeros", zshapes, "authors,fla,sdpa")
        runner.bench("zeros", "linear", zshapes, "fla", row_name="linear")
    if "crossover" in args.groups:
        print(f"== crossover and memory floor: {args.crossover_variant} and SDPA vs T (B*T fixed)", flush=True)
        tokens = quick["tokens"] if quick else CROSSOVER_TOKENS
        ts = quick["T"] if quick else CROSSOVER_T
        h, d = (quick["shapes"][0][2], quick["shapes"][0][3]) if quick else (CROSSOVER_H, CROSSOVER_D)
        cross = tuple((max(1, tokens // t), t, h, d) for t in ts)
        runner.bench("crossover", args.crossover_variant, cross, "fla,sdpa")


# --- reporting ---------------------------------------------------------------------------------------------

def _f(value, spec=".3f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict], meta: dict) -> None:
    ceil = meta.get("ceilings") or {}
    print()
    print(f"device {meta['device']} | {meta['versions'].get('torch')} torch, triton {meta['versions'].get('triton')}, "
          f"fla {meta['versions'].get('fla')} | dtype {meta.get('dtype')} | copy {_f(ceil.get('copy_tb_s'), '.2f')} TB/s, "
          f"bf16 matmul {_f(ceil.get('matmul_bf16_tflop_s'), '.0f')} TFLOP/s")
    if not meta.get("meaningful", True):
        print("NOTE: CPU run through the interpreter: the times mean nothing")
    head = (f"{'group':<9} {'variant':<11} {'shape BxTxHxD':<17} {'impl':<11} {'fwd ms':>9} {'f+b ms':>9} "
            f"{'x fwd':>6} {'x f+b':>6} {'floor':>7} {'/floor':>6} {'err':>7}  status / note")
    print(head)
    print("-" * len(head))
    for r in rows:
        note = r.get("status", "")
        if r.get("status") != "ok":
            note += f": {r.get('reason', '')}"
        elif r.get("bwd_status") not in ("ok", None):
            note += f"; bwd {r['bwd_status']}: {r.get('bwd_reason', '')}"
        print(f"{r['group']:<9} {r['variant']:<11} {r['shape']:<17} {r.get('peer', ''):<11} {_f(r.get('fwd_ms')):>9} "
              f"{_f(r.get('fwdbwd_ms')):>9} {_f(r.get('fwd_ratio'), '.2f'):>6} {_f(r.get('fwdbwd_ratio'), '.2f'):>6} "
              f"{_f(r.get('floor_ms')):>7} {_f(r.get('fwd_over_floor'), '.1f'):>6} {_f(r.get('fwd_error'), '.1e'):>7}  "
              f"{note[:110]}")
    print("x fwd / x f+b: that row's time over slagen's (> 1: slagen faster). floor: io bytes / copy bandwidth.")


def plot(rows: list[dict], path: Path, title: str = "") -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed"
    series: dict[str, list[tuple[int, float, float | None]]] = {}
    for r in rows:
        if r["group"] != "crossover" or r.get("fwd_ms") is None:
            continue
        label = f"slagen {r['variant']}" if r["peer"] == "slagen" else f"{r['peer']} ({r['variant']})" \
            if r["peer"] == "fla" else r["peer"]
        series.setdefault(label, []).append((r["T"], r["fwd_ms"], r.get("fwdbwd_ms")))
    if not series:
        return "plot skipped: no crossover rows were timed"
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, points in sorted(series.items()):
        points.sort()
        ts = [p[0] for p in points]
        axes[0].plot(ts, [p[1] for p in points], marker="o", label=label)
        bwd = [(p[0], p[2]) for p in points if p[2] is not None]
        if bwd:
            axes[1].plot([p[0] for p in bwd], [p[1] for p in bwd], marker="o", label=label)
    floor = sorted({(r["T"], r["floor_ms"]) for r in rows if r["group"] == "crossover" and r.get("floor_ms")
                    and r["peer"] == "slagen"})
    if floor:
        axes[0].plot([f[0] for f in floor], [f[1] for f in floor], "k--", label="memory floor (slagen's bytes)")
    for ax, title in zip(axes, ("forward", "forward + backward")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("T (B*T fixed)")
        ax.set_ylabel("ms (median)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"plot written: {path}"


# --- main --------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", default=",".join(GROUPS), help=f"comma-separated, from {', '.join(GROUPS)}")
    parser.add_argument("--variants", default=None, help="only these base/SLA variants, e.g. retnet,sla_retnet")
    parser.add_argument("--shapes", default="anchor",
                        help="base/SLA shapes: anchor (8x4096x16x128, 2x16384x16x128), prod (fla's production set "
                             "plus 8x4096x16x128), or BxTxHxD,... with K = V = D")
    parser.add_argument("--crossover-variant", default="retnet")
    parser.add_argument("--dtype", default=None, help="bfloat16 (default on a GPU), float16, float32")
    parser.add_argument("--forward-only", action="store_true",
                        help="time the forward only (skips backward checks and fla's backward autotuning)")
    parser.add_argument("--quick", action="store_true", help="smoke run: small shapes, few variants, short timing")
    parser.add_argument("--warmup-ms", type=float, default=None, help="do_bench warm-up (default 25; quick 5)")
    parser.add_argument("--rep-ms", type=float, default=None, help="do_bench repetition time (default 100; quick 20)")
    parser.add_argument("--budget-s", type=float, default=540.0,
                        help="start no new variant after this many seconds (default 540: fits a 10-minute call); 0: none")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for the JSON and the plot")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="with --quick and no GPU: tiny shapes through Triton's interpreter (plumbing only)")
    args = parser.parse_args(argv)
    args.groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    bad = [g for g in args.groups if g not in GROUPS]
    if bad:
        parser.error(f"--groups: unknown {bad}; expected some of {', '.join(GROUPS)}")
    if args.budget_s is not None and args.budget_s <= 0:
        args.budget_s = None

    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        if not (args.allow_cpu and args.quick):
            parser.error("no CUDA GPU is visible: run this on the GPU machine (or --quick --allow-cpu to check "
                         "the plumbing through Triton's interpreter)")
        os.environ.setdefault("TRITON_INTERPRET", "1")
    quick = (QUICK if cuda else CPU_QUICK) if args.quick else None
    if args.warmup_ms is None:
        args.warmup_ms = quick["warmup_ms"] if quick else 25.0
    if args.rep_ms is None:
        args.rep_ms = quick["rep_ms"] if quick else 100.0
    if not args.quick:
        parse_shape_list(args.shapes)  # fail before any device work

    from slagen.bench import device_name, device_slug, versions

    now = datetime.datetime.now(datetime.timezone.utc)
    out_dir = Path(args.out)
    stem = f"{device_slug()}-{now.date().isoformat()}"
    out_path = out_dir / f"{stem}.json"
    n = 2
    while out_path.exists():
        out_path, n = out_dir / f"{stem}-{n}.json", n + 1
    meta = {"device": device_name(), "versions": versions(), "date": now.isoformat(timespec="seconds"),
            "meaningful": cuda, "args": {k: v for k, v in vars(args).items()}, "ceilings": None}
    print(f"run_anchors: {meta['device']}, groups {','.join(args.groups)}{' (quick)' if args.quick else ''}; "
          f"results -> {out_path}", flush=True)
    if cuda:
        meta["ceilings"] = measure_ceilings()
        c = meta["ceilings"]
        print(f"ceilings: copy {c['copy_tb_s']:.2f} TB/s (read + write), bf16 matmul {c['matmul_bf16_tflop_s']:.0f} TFLOP/s",
              flush=True)
    runner = Runner(args, out_path, meta)
    try:
        run_groups(runner, args, quick)
    finally:
        runner.write()
        note = "plot skipped: --no-plot" if args.no_plot else plot(
            runner.rows, out_path.with_suffix(".png"),
            f"{meta['device']}, {meta.get('dtype')}: time vs T at fixed B*T")
        meta["plot"] = note
        runner.write()
        print_table(runner.rows, meta)
        if runner.skipped:
            print(f"not run (budget {args.budget_s:.0f} s): {'; '.join(runner.skipped)}")
        print(note)
        print(f"results: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
