"""MMA FLOPs of the launches `static_vs_fla.py` chose, counted under Triton's interpreter (its
`--flops-worker` process, TRITON_INTERPRET=1): 2·M·N·K per `tl.dot` a program executes, at B = H = 1 and a
short T, scaled to the problem's B·H·T."""

from __future__ import annotations

from typing import Any

import torch

import static_fla
from static_problems import FLA_OPS, fla_call, leaves, loaded_slagen_modules, problem, slagen_call

class FixedConfig:
    """Under the interpreter: an autotuned fla kernel launched with the config the static pass chose for it
    (the next one in launch order), heuristics applied, instead of autotuning."""

    def __init__(self, obj: Any, chosen: dict) -> None:
        self.obj, self.chosen = obj, chosen

    def __getitem__(self, grid: Any):
        def launch(*args: Any, **kwargs: Any) -> Any:
            jit, found = static_fla.candidates(self.obj, grid, args, kwargs)
            index = self.chosen[static_fla.kernel_id(jit)].pop(0)
            named, options, _ = found[index]
            return jit[grid](**named, **options)

        return launch


def _tensor_range(*bounds: Any):
    """`range` for modules with interpreted kernels: over bounds that are kernel values (a triton scalar) the
    counters are triton scalars too, as in compiled code (fla calls `.to()` on them; triton 3.6's interpreter
    cannot take a scalar's index); over Python ints, plain ints (the host code)."""
    import builtins

    import triton.language as tl
    from triton.runtime.interpreter import _implicit_cvt

    if not any(isinstance(b, tl.tensor) for b in bounds):
        yield from builtins.range(*bounds)
        return
    ints = [int(b.handle.data.item()) if isinstance(b, tl.tensor) else int(b) for b in bounds]
    for i in builtins.range(*ints):
        yield _implicit_cvt(i)


def count_flops(plan: dict) -> dict:
    """In a process with TRITON_INTERPRET=1: tensor-core FLOPs (2·M·N·K per tl.dot a program executes) of
    each op at B = H = 1 and T = the plan's `seqlen`, scaled to the plan's B·H·T (the programs of each head
    and sequence are independent, and chunked kernels do the same work per chunk: linear in T)."""
    import triton.runtime.interpreter as interp

    counted = [0]
    original = interp.InterpreterBuilder.create_dot

    def create_dot(self, a, b, d, *rest):
        counted[0] += 2 * a.data.size * b.data.shape[-1]
        return original(self, a, b, d, *rest)

    interp.InterpreterBuilder.create_dot = create_dot
    fla_fns = static_fla.import_fla_as_hopper()
    for module in static_fla.fla_modules():
        if any(static_fla.is_kernel(v) for v in vars(module).values()):
            module.range = _tensor_range
    B, T, H, D = plan["shape"]
    short = plan["seqlen"]
    out: dict = {}
    for op, chosen in plan["chosen"].items():
        spec, inputs = problem(op, 1, short, 1, D, torch.bfloat16, "cpu")
        fwd, bwd = loaded_slagen_modules(spec)
        fwd.range = bwd.range = _tensor_range
        queues = {k: list(v) for k, v in chosen.items()}
        wrapped = [m for m in static_fla.fla_modules()]
        autotuned = static_fla.Swapped(wrapped, lambda obj: obj if static_fla.layers(obj)[1] is obj
                                       else FixedConfig(obj, queues))
        fresh = lambda: leaves({k: v.clone() for k, v in inputs.items()})  # noqa: E731
        out[op] = {}
        calls = [("slagen", slagen_call(fwd, bwd, fresh(), D ** -0.5))]
        if op in FLA_OPS:
            calls.append(("fla", fla_call(op, fla_fns, fresh(), D ** -0.5)))
        for side, (forward, backward, inference) in calls:
            out[op][side] = {}
            with autotuned:  # the order static_vs_fla recorded them in (fla's chosen configs are queued so)
                for direction, fn in (("forward", forward), ("backward", backward), ("inference", inference)):
                    counted[0] = 0
                    fn()
                    out[op][side][direction] = counted[0] * B * H * T // short
        left = {k: v for k, v in queues.items() if v}
        assert not left, f"{op}: fla launched fewer autotuned kernels under the interpreter: {left}"
    return out
