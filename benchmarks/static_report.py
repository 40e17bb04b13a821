"""The markdown tables of `static_vs_fla.py`'s report, rendered from its JSON (so a committed JSON can be
re-rendered: `python benchmarks/static_report.py benchmarks/results/static-sm90-triton3.6.0-<date>.json`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from static_problems import BASES, TARGETS

def _kernel_max(key: str):
    return lambda d: max(((k[key] or 0) for k in d["kernels"]), default=0)


COLUMNS = [  # the table's slagen / fla cells, each from one op direction's summary
    lambda d: d["launches"],
    lambda d: ",".join(str(k["ctas"]) for k in d["kernels"]),
    lambda d: "+".join(sorted({t for k in d["kernels"] for t in (k["mma_types"] or [])})) or "-",
    _kernel_max("registers"),
    _kernel_max("spill_bytes"),
    lambda d: round(_kernel_max("shared")(d) / 1024),
    lambda d: d["host_ops"],
    lambda d: format(d["bytes_touched"] / 2**30, ".2f"),
]


def markdown(report: dict) -> str:
    B, T, H, D = report["shape"]
    lines = [f"# Static comparison with fla-core {report['fla_version']}: sm_90, triton {report['triton']}, "
             f"bf16, B={B} T={T} H={H} K=V={D} ({report['date']})", "",
             "Made by `benchmarks/static_vs_fla.py` (no GPU: launches recorded, compiled for sm_90 with triton's "
             f"ptxas; FLOPs counted under triton {report.get('flops_triton')}'s interpreter at T="
             f"{report.get('flops_seqlen')}, scaled). fla's autotuned kernels: the best of "
             f"{report['configs_per_fla_kernel']} configs by spills, then registers. Per op, slagen / fla; the "
             "ratio columns are slagen over "
             "fla. Targets (issue 17): BF16 MMA operands, 0 spills, CTAs >= 1024 for parallel kernels, bytes "
             "<= fla, MMA FLOPs <= 1.15x fla.", "",
             "| op | launches | CTAs per launch | MMA operands | max regs | spill B (max) | smem KiB (max) | "
             "host ops | GiB touched | bytes ratio | MMA GFLOP | FLOPs ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for op, sides in report["ops"].items():
        if "fla" not in sides:
            continue
        for direction in ("forward", "backward"):
            s, f = sides["slagen"][direction], sides["fla"][direction]
            cells = [" / ".join(str(column(d)) for d in (s, f)) for column in COLUMNS]
            flops_s, flops_f = s.get("mma_flops"), f.get("mma_flops")
            flops = "n/a" if flops_s is None else f"{flops_s / 1e9:.0f} / {flops_f / 1e9:.0f}"
            ratio = "n/a" if not flops_f else f"{flops_s / flops_f:.2f}"
            bytes_ratio = f"{s['bytes_touched'] / f['bytes_touched']:.2f}"
            lines.append(f"| {op} {'fwd' if direction == 'forward' else 'bwd'} | {' | '.join(cells)} | {bytes_ratio} | "
                         f"{flops} | {ratio} |")
    lines += base_table(report)
    lines += ["", "slagen's kernels off the per-kernel targets (non-BF16 MMA operands, spills, < 1024 CTAs: the last "
              "is a target for parallel kernels only, sequential state passes are excepted):", ""]
    for op, sides in report["ops"].items():
        for direction, data in sides["slagen"].items():
            for k in data["kernels"]:
                types = k["mma_types"] or []
                off = [f"MMA {'+'.join(types)}"] if types and types != ["BF16"] else []
                off += [f"{k['spill_bytes']} B spilled"] if k["spill_bytes"] else []
                off += [f"{k['ctas']} CTAs"] if k["ctas"] < 1024 else []
                if off:
                    lines.append(f"- {op} {direction} `{k['kernel']}`: {', '.join(off)}")
    lines += ["", "Kernels failing to compile, if any: " + (", ".join(report["failures"]) or "none") + ".", "",
              "Reading fla's side: with no clock, its autotuned kernels get the config with the fewest spills, then "
              "registers, of the few compiled (`configs_tried` of `configs` per kernel in the JSON). That favours "
              "small tiles: where a small-tile config wins, fla's FLOPs count the recomputation its tiling implies "
              "(e.g. q·kᵀ once per V block) and its CTAs are higher than a tuned run's; where every config tried "
              "spills, its spills may be overstated. Bytes touched count each distinct tensor argument of a launch "
              "once, whole, plus the inputs and outputs of each host op (views and allocations free)."]
    return "\n".join(lines) + "\n"


ROWS = (("fwd, no grad", ("inference",)), ("fwd, autograd", ("forward",)), ("bwd", ("backward",)),
        ("fwd+bwd, autograd", ("forward", "backward")))  # the base table's rows: which directions each sums


def _summed(sides: dict, directions: tuple) -> dict | None:
    parts = [sides["slagen"].get(d) for d in directions]
    if any(p is None for p in parts):  # a report from before the inference rows
        return None
    flops = [p.get("mma_flops") for p in parts]
    return {key: sum(p[key] for p in parts) for key in ("launches", "host_ops", "bytes_touched")} | {
        "mma_flops": None if None in flops else sum(flops)}


def base_table(report: dict) -> list[str]:
    """SLA forms and ZeroS against their base variant (slagen both): issue 17's targets as ratio columns."""
    ops = [op for op in report["ops"] if op in BASES and BASES[op] in report["ops"]]
    if not ops:
        return []
    lines = ["", "SLA forms and ZeroS against their base variant (slagen both sides; op / base). Targets (issue 17): "
             "SLA bytes <= 1.05x the base with the same launches and host ops; ZeroS bytes <= 3x plain linear "
             "attention at the same head dims. \"fwd, no grad\" is the forward the runtime runs when nothing "
             "requires grad; \"fwd, autograd\" also writes what the backward reads back (sla_gdn's o_raw, "
             "`epilogue_input = \"saved\"`), which that backward gains back, so a training step is the last row "
             "and the rows the target is read on are no-grad forward, backward and training step.", "",
             "| op | base | launches | host ops | GiB touched | bytes ratio | target | MMA GFLOP | FLOPs ratio | met |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for op in ops:
        base = BASES[op]
        for label, directions in ROWS:
            s, b = _summed(report["ops"][op], directions), _summed(report["ops"][base], directions)
            if s is None or b is None:
                continue
            ratio = s["bytes_touched"] / b["bytes_touched"]
            met = ratio <= TARGETS[op] and (op == "zeros" or (s["launches"], s["host_ops"]) ==
                                            (b["launches"], b["host_ops"]))
            flops_s, flops_b = s["mma_flops"], b["mma_flops"]
            flops = "n/a" if flops_s is None else f"{flops_s / 1e9:.0f} / {flops_b / 1e9:.0f}"
            flops_ratio = "n/a" if not flops_b else f"{flops_s / flops_b:.2f}"
            lines.append(f"| {op} {label} | {base} | {s['launches']} / "
                         f"{b['launches']} | {s['host_ops']} / {b['host_ops']} | {s['bytes_touched'] / 2**30:.2f} / "
                         f"{b['bytes_touched'] / 2**30:.2f} | {ratio:.3f} | <= {TARGETS[op]:g} | {flops} | "
                         f"{flops_ratio} | {'yes' if met else 'no'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_file():
        print(f"usage: static_report.py REPORT.json (the JSON static_vs_fla.py wrote); got {args!r}",
              file=sys.stderr)
        return 2
    print(markdown(json.loads(Path(args[0]).read_text())), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
