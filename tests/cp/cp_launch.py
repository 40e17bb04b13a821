"""Start `world` gloo ranks running `cp_worker.run_rank` (bounded in time) and compare what they return
with the single-process oracle of `cp_cases`."""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time

import torch
import torch.multiprocessing as mp

from cp_cases import TOKEN_INPUTS, single_process
from cp_worker import run_rank


def spawn_ranks(world: int, cases: list, timeout: float = 240.0) -> list[dict]:
    """Run the cases on `world` processes; returns each rank's results. Fails (and stops the processes it
    started) past `timeout` seconds."""
    # children inherit the environment: the interpreter is on before anything in them imports triton
    os.environ.setdefault("TRITON_INTERPRET", "1")
    with tempfile.TemporaryDirectory() as tmp:
        procs = mp.start_processes(run_rank, args=(world, os.path.join(tmp, "rendezvous"), cases, tmp),
                                   nprocs=world, join=False, start_method="spawn")
        deadline = time.monotonic() + timeout
        try:
            while not procs.join(timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"context-parallel ranks still running after {timeout:.0f} s")
        finally:
            for p in procs.processes:
                if p.is_alive():
                    p.terminate()
        results = [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False) for r in range(world)]
    errors = [r["error"] for r in results if "error" in r]
    assert not errors, "a rank failed:\n" + errors[0]
    return results


def rel_rms(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double(), want.double()
    assert got.shape == want.shape, f"shape {list(got.shape)}, expected {list(want.shape)}"
    assert torch.isfinite(got).all(), "non-finite values"
    return ((got - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def compare(case: dict, ranks: list[dict], tol: float) -> dict:
    """Relative RMS errors of the ranks' outputs, final states and gradients put together, against the
    oracle: token-sliced tensors concatenated in rank order, per-head inputs and initial states summed."""
    want = _oracle(json.dumps(case, sort_keys=True))
    got = [r[case["name"]] for r in ranks]
    errors = {"o": rel_rms(torch.cat([g["o"] for g in got], dim=1), want["o"])}
    if got[0]["o_plain"] is not None:
        errors["o (no grad)"] = rel_rms(torch.cat([g["o_plain"] for g in got], dim=1), want["o"])
    ends = [i for g in got for i in g["ends"]]
    assert ends == list(range(want["final"][0].shape[0])), f"final-state rows for sequences {ends}"
    for p, w in enumerate(want["final"]):
        errors[f"final[{p}]"] = rel_rms(torch.cat([g["final"][p] for g in got]), w)
    for name, w in want["grads"].items():
        if w is None:  # an input the op does not differentiate (g_gamma for kernels): no rank may either
            assert all(g["grads"][name] is None for g in got), f"d{name}: the op gives none, a rank did"
            continue
        if isinstance(w, tuple):  # the initial state: each rank gives the rows of the sequences it starts
            for p, wp in enumerate(w):
                errors[f"d{name}[{p}]"] = rel_rms(_sum(g["grads"][name][p] for g in got), wp)
        elif name in TOKEN_INPUTS:
            errors[f"d{name}"] = rel_rms(torch.cat([g["grads"][name] for g in got], dim=1), w)
        else:
            errors[f"d{name}"] = rel_rms(_sum(g["grads"][name] for g in got), w)
    bad = {k: f"{e:.2e}" for k, e in errors.items() if not e < tol}
    assert not bad, f"{case['name']}: relative RMS over {tol:g}: {bad}"
    return errors


def _sum(grads) -> torch.Tensor:
    """The ranks' shares of a gradient (None where a rank did not use the input) added up."""
    present = [g for g in grads if g is not None]
    assert present, "no rank returned this gradient"
    return sum(present[1:], present[0])


@functools.lru_cache(maxsize=None)
def _oracle(case_json: str) -> dict:
    """`single_process`, once per case (2 and 4 ranks share their cases)."""
    return single_process(json.loads(case_json))
