"""Context parallelism's exchange: bytes per rank and the time of the combine step as the ranks grow, on
CPU processes (gloo), against a ring pass of the same states; then the expected cost on GPUs next to ring
attention's K/V traffic for softmax attention at the same length.

    python benchmarks/context_parallel.py [--ranks 2,4,8] [--heads 16] [--dim 128] [--reps 20] [--json]

What is timed is exactly the runtime's combine (`slagen.runtime.cp`): forward, the all-gather of every
rank's slice map plus the local fold into its incoming state; backward, the all-gather of the incoming-state
gradients plus the fold run backward (autograd over the few states). One sequence split over all ranks, so
every middle rank composes (the most work per rank). "ring" is the alternative: rank r waits for rank r-1's
outgoing state, applies its own map and sends the result on (W - 1 dependent hops). Times are the slowest
rank's, medians over `--reps`. The kernels' passes over the tokens are not part of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

FAMILIES = ("mamba2", "gla", "gdn", "zeros")  # scalar decay, per-channel decay, delta rule, ZeroS
RING_ATTENTION_ITEMSIZE = 2  # bf16 K and V blocks
GPU_LINK_GBPS = 400.0  # assumed all-gather bus bandwidth per GPU, GB/s (8x H100/H200 on NVLink 4)
GPU_LATENCY_US = 15.0  # assumed latency of one NCCL collective or hop on one node, us


def _spec(name: str, dim: int):
    from slagen.spec import BUILTIN_SPECS

    return dataclasses.replace(BUILTIN_SPECS[name], head_dim_k=dim, head_dim_v=dim)


def _random_map(spec, heads: int, gen: torch.Generator) -> list[torch.Tensor]:
    """A plausible slice map: decays in (0, 1), a delta-rule map near a contraction, a ZeroS state with a
    consistent max and count."""
    from slagen.runtime import cp_state

    parts = [torch.rand(s, generator=gen) for s in cp_state.map_shapes(spec, heads)]
    if spec.decay == "delta":
        parts[0] = 0.9 * torch.linalg.qr(torch.randn(parts[0].shape, generator=gen))[0]
    if spec.zero_sum:
        parts[-1][:, 2] = torch.randn(heads, generator=gen)  # max
        parts[-1][:, 3] = 1000.0  # count
    return parts


def _median_max(samples: list[float], group=None) -> float:
    """Median over reps of the slowest rank's time (seconds)."""
    t = torch.tensor(samples, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return statistics.median(t.tolist())


def _time_allgather(spec, ctx, slices, own, reps: int) -> tuple[float, float]:
    from slagen.runtime import cp, cp_state

    shapes = cp_state.map_shapes(spec, own[-1].shape[0])
    state_shapes = cp_state.state_shapes(spec, own[-1].shape[0])
    d_in = [torch.randn(s) for s in state_shapes]
    fwd, bwd = [], []
    for _ in range(reps + 2):
        dist.barrier()
        start = time.perf_counter()
        flat = cp.gather(ctx, own)
        maps = [cp_state.unpack(flat[j], shapes) for j in range(ctx.world_size)]
        state_in = cp.incoming_state(spec, slices, ctx.rank, maps) if slices[ctx.rank].continues else None
        fwd.append(time.perf_counter() - start)
        dist.barrier()
        start = time.perf_counter()
        flat = cp.gather(ctx, d_in)
        every = [cp_state.unpack(flat[j], state_shapes) for j in range(ctx.world_size)]
        leaves = [t.clone().requires_grad_() for t in own]
        if slices[ctx.rank].passes_on:
            cp.outgoing_grad(spec, slices, ctx.rank, maps, leaves, state_in, every)
        bwd.append(time.perf_counter() - start)
    return _median_max(fwd[2:]), _median_max(bwd[2:])


def _time_ring(spec, ctx, slices, own, reps: int) -> float:
    """Forward only: the state travels rank to rank, each applying its map."""
    from slagen.runtime import cp_state

    n_state = len(cp_state.state_shapes(spec, own[-1].shape[0]))
    state_shapes = [t.shape for t in own[-n_state:]]
    times = []
    for _ in range(reps + 2):
        dist.barrier()
        start = time.perf_counter()
        r, W = ctx.rank, ctx.world_size
        if r == 0:
            out = own[-n_state:]
        else:
            flat = torch.empty(sum(torch.Size(s).numel() for s in state_shapes))
            dist.recv(flat, src=r - 1)
            state = cp_state.unpack(flat, state_shapes)
            out = cp_state.step(spec, own, state) if slices[r].passthrough else state
        if r < W - 1:
            dist.send(cp_state.pack(out).contiguous(), dst=r + 1)
        times.append(time.perf_counter() - start)
    return _median_max(times[2:])


def _rank_main(rank: int, world: int, rendezvous: str, args: dict, out_path: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=300))
    torch.set_num_threads(1)
    from slagen.runtime import cp, cp_state

    ctx = cp.context()
    slices = ctx.slices(1)
    rows = []
    for name in FAMILIES:
        spec = _spec(name, args["dim"])
        own = _random_map(spec, args["heads"], torch.Generator().manual_seed(rank))
        fwd, bwd = _time_allgather(spec, ctx, slices, own, args["reps"])
        ring = _time_ring(spec, ctx, slices, own, args["reps"])
        sent = cp_state.exchanged_bytes(spec, args["heads"], world)
        rows.append(dict(family=name, ranks=world, **sent, allgather_forward_ms=fwd * 1e3,
                         allgather_backward_ms=bwd * 1e3, ring_forward_ms=ring * 1e3))
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(rows, f)
    dist.destroy_process_group()


def measure(world: int, args: dict) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        mp.start_processes(_rank_main, args=(world, os.path.join(tmp, "rendezvous"), args, out), nprocs=world,
                           start_method="spawn")
        with open(out) as f:
            return json.load(f)


def gpu_estimate(world: int, t_local: int, heads: int, dim: int) -> dict:
    """Bytes per rank per layer (forward) at `world` ranks of `t_local` tokens, and the time they take on the
    assumed links, for slagen's context parallelism and for ring attention."""
    from slagen.runtime import cp_state

    ring_attention = (world - 1) * t_local * heads * 2 * dim * RING_ATTENTION_ITEMSIZE
    out = {"ring_attention_receive_forward": ring_attention,
           "ring_attention_forward_ms": ring_attention / GPU_LINK_GBPS / 1e6 + (world - 1) * GPU_LATENCY_US / 1e3}
    for name in FAMILIES:
        sent = cp_state.exchanged_bytes(_spec(name, dim), heads, world)
        out[f"{name}_receive_forward"] = sent["receive_forward"]
        out[f"{name}_receive_backward"] = sent["receive_backward"]
        out[f"{name}_forward_ms"] = sent["receive_forward"] / GPU_LINK_GBPS / 1e6 + GPU_LATENCY_US / 1e3
    return out


def _mib(n: int) -> str:
    return f"{n / 2**20:,.2f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="2,4,8", help="comma-separated process counts")
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--dim", type=int, default=128, help="K = V")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--gpu-ranks", type=int, default=8, help="ranks of the GPU estimate")
    parser.add_argument("--gpu-tokens", type=int, default=128 * 1024, help="tokens per rank of the GPU estimate")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of tables")
    args = parser.parse_args()
    try:
        ranks = [int(r) for r in args.ranks.split(",")]
    except ValueError:
        parser.error(f"--ranks: expected comma-separated integers like 2,4,8, got {args.ranks!r}")
    if any(r < 2 for r in ranks):
        parser.error(f"--ranks: expected process counts >= 2, got {args.ranks!r}")
    setting = dict(heads=args.heads, dim=args.dim, reps=args.reps)
    rows = [row for world in ranks for row in measure(world, setting)]
    estimate = gpu_estimate(args.gpu_ranks, args.gpu_tokens, args.heads, args.dim)
    if args.json:
        print(json.dumps({"cpu": rows, "gpu_estimate": estimate, "setting": setting}))
        return
    print(f"CPU, gloo, {os.cpu_count()} cores; H={args.heads}, K=V={args.dim}, fp32 states; medians of the slowest "
          f"rank over {args.reps} reps")
    print(f"{'family':8} {'ranks':>5} {'send fwd':>12} {'recv fwd':>12} {'recv bwd':>12} {'all-gather fwd':>15} "
          f"{'all-gather bwd':>15} {'ring fwd':>10}")
    for r in rows:
        print(f"{r['family']:8} {r['ranks']:5d} {_mib(r['send_forward']):>12} {_mib(r['receive_forward']):>12} "
              f"{_mib(r['receive_backward']):>12} {r['allgather_forward_ms']:12.2f} ms "
              f"{r['allgather_backward_ms']:12.2f} ms {r['ring_forward_ms']:7.2f} ms")
    W, T = args.gpu_ranks, args.gpu_tokens
    print(f"\nGPU estimate, {W} ranks x {T:,} tokens, H={args.heads}, K=V={args.dim}, per rank per layer, forward "
          f"(assumed {GPU_LINK_GBPS:.0f} GB/s, {GPU_LATENCY_US:.0f} us per collective):")
    ring = estimate["ring_attention_receive_forward"]
    print(f"  ring attention (bf16 K, V blocks): {_mib(ring)}  ~{estimate['ring_attention_forward_ms']:.2f} ms")
    for name in FAMILIES:
        got = estimate[f"{name}_receive_forward"]
        print(f"  slagen CP {name:7}: {_mib(got)} (backward {_mib(estimate[f'{name}_receive_backward'])})  "
              f"~{estimate[f'{name}_forward_ms']:.3f} ms  ({ring / got:,.0f}x less than ring attention)")


if __name__ == "__main__":
    sys.exit(main())
