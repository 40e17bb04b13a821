"""Tuning workers that share a GPU: they compile in parallel (`precompile`: every launch of the trial's
calls goes through `JITFunction.warmup`, nothing runs) and take turns to verify and time (`gpu_lock`)."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import torch

from slagen.tuning import aot, gpu_lock
from slagen.tuning.measure import MeasureSettings, TrialContext, precompile, warm_seqlen


def _hold(key: str, seconds: float, out) -> None:
    with gpu_lock.exclusive(key):
        start = time.monotonic()
        time.sleep(seconds)
        out.put((start, time.monotonic()))


def test_the_lock_gives_one_process_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setenv("SLAGEN_CACHE_DIR", str(tmp_path))  # inherited by the spawned processes
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    procs = [context.Process(target=_hold, args=("NVIDIA H100 80GB HBM3|9.0", 0.5, out)) for _ in range(3)]
    for proc in procs:
        proc.start()
    spans = sorted(out.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, f"two processes held the GPU at once: {spans}"
    assert gpu_lock.lock_path("NVIDIA H100 80GB HBM3|9.0").parent == tmp_path / "locks"


def test_a_different_gpu_has_its_own_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("SLAGEN_CACHE_DIR", str(tmp_path))
    with gpu_lock.exclusive("gpu a"):
        with gpu_lock.exclusive("gpu b"):  # would block forever on the same file
            pass
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_lock.lock_path("gpu a").name == "gpu_a.lock"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # a process given GPU 1 locks GPU 1
    assert gpu_lock.lock_path("gpu a").name == "gpu_a-1.lock"


PROBE = '''
import torch
import triton
import triton.language as tl


@triton.jit
def add_one(x, y, n, N: tl.constexpr):
    o = tl.arange(0, N)
    tl.store(y + o, tl.load(x + o) + n)


def run(x):
    y = torch.full_like(x, -7.0)
    add_one[(1,)](x, y, 1, N=x.numel(), num_warps=1)
    add_one[(2,)](x, y, 2, N=x.numel(), num_warps=1)
    return y
'''


def test_warm_up_compiles_every_launch_and_runs_none(monkeypatch):
    from triton.runtime.jit import JITFunction

    module = aot.import_compilable(PROBE)
    seen = []
    monkeypatch.setattr(JITFunction, "warmup", lambda self, *args, grid, **kw: seen.append((self.__name__, grid,
                                                                                             args[2], kw)))
    x = torch.arange(16, dtype=torch.float32)
    result = {}
    aot.warm_up([module], lambda: result.setdefault("y", module.run(x)))
    assert [(name, grid, n) for name, grid, n, _ in seen] == [("add_one", (1,), 1), ("add_one", (2,), 2)]
    assert seen[0][3] == {"N": 16, "num_warps": 1}
    assert torch.equal(result["y"], torch.full_like(x, -7.0)), "a kernel ran"
    assert isinstance(module.add_one, JITFunction), "the kernel was not put back"


def test_warm_up_puts_kernels_back_when_the_call_fails():
    from triton.runtime.jit import JITFunction

    module = aot.import_compilable(PROBE)
    with pytest.raises(RuntimeError, match="boom"):
        aot.warm_up([module], lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert isinstance(module.add_one, JITFunction)


@pytest.mark.parametrize("seqlen", [1, 2, 15, 100, 128, 129, 1000, 2048, 4096, 4097, 8191, 65536])
def test_warm_seqlen_keeps_what_the_jit_specialises_on(seqlen):
    short = warm_seqlen(seqlen)
    assert short <= 128 or short < seqlen
    assert short % 16 == seqlen % 16 and (short == 1) == (seqlen == 1)
    for batch in (1, 2, 3, 8):
        assert (batch * short) % 16 == (batch * seqlen) % 16  # B * T is an argument too


def test_precompile_does_nothing_on_the_interpreter():
    from slagen.codegen import lower
    from slagen.spec import BUILTIN_SPECS, ProblemShape
    from slagen.tuning.fingerprint import interpreter_fingerprint

    spec = BUILTIN_SPECS["linear"]
    plan = lower(spec)["forward"]
    ctx = TrialContext(spec, plan, plan.validate_config(None, partial=True), ProblemShape(1, 64, 2), "float32",
                       interpreter_fingerprint())
    assert precompile(object(), ctx, MeasureSettings()) is False
