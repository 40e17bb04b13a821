"""fla-core on a machine without a GPU, for `static_vs_fla.py`: import it as if on an H100, and find, wrap and
unwrap its kernels (a `@triton.jit` function, possibly under `@triton.autotune` and `@triton.heuristics`).

Nothing here is slagen's package: fla is an optional peer, installed beside slagen (`pip install --no-deps
fla-core==0.6.0 einops`), never vendored.
"""

from __future__ import annotations

import inspect
import itertools
import sys
import types
from typing import Any, Callable

import torch

HOPPER_SHARED = 232448  # bytes per block (opt-in), what fla's `check_shared_mem('hopper')` compares with
HOPPER_SMS = 132


class _FakeUtils:
    @staticmethod
    def get_device_properties(index: int = 0) -> dict:
        return {"max_shared_mem": HOPPER_SHARED, "multiprocessor_count": HOPPER_SMS}


class _FakeDriver:
    """Answers fla's import-time device questions as an H100's driver would (nothing is launched)."""

    utils = _FakeUtils()

    def get_current_target(self):
        from triton.backends.compiler import GPUTarget

        return GPUTarget("cuda", 90, 32)


def import_fla_as_hopper() -> dict[str, types.ModuleType]:
    """Import the fla ops the benchmark compares with, with fla's device checks answered for an H100
    (its module-level config lists, `IS_NVIDIA_HOPPER`, shared-memory tiers), and restore torch.cuda after."""
    import triton

    patched = {"get_device_name": lambda *a, **k: "NVIDIA H100 80GB HBM3",
               "get_device_capability": lambda *a, **k: (9, 0), "device_count": lambda: 1,
               "get_device_properties": lambda *a, **k: types.SimpleNamespace(
                   shared_memory_per_block_optin=HOPPER_SHARED, shared_memory_per_block=49152,
                   multi_processor_count=HOPPER_SMS, name="NVIDIA H100 80GB HBM3")}
    saved = {name: getattr(torch.cuda, name) for name in patched}
    triton.runtime.driver.set_active(_FakeDriver())
    for name, fn in patched.items():
        setattr(torch.cuda, name, fn)
    try:
        import fla.utils.hardware as hw

        assert hw.IS_NVIDIA_HOPPER, "fla did not take the stub for an H100"
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        from fla.ops.gla import chunk_gla
        from fla.ops.simple_gla import chunk_simple_gla
    finally:
        for name, fn in saved.items():
            setattr(torch.cuda, name, fn)

    # called at run time with the tensor's device index (None for meta tensors): answer for an H100
    def check_shared_mem(arch: str = "none", tensor_idx: Any = 0) -> bool:
        return HOPPER_SHARED >= hw.Backend.get_shared_memory(arch)

    for module in fla_modules():
        if getattr(module, "check_shared_mem", None) is not None:
            module.check_shared_mem = check_shared_mem
        # fla 0.6.0 refuses gated chunk_bwd_dqkwg on Hopper with 3.4 <= triton < 3.7.1 (its #640, wrong
        # results at run time); nothing runs here, so compile the kernel it would launch.
        if hasattr(module, "TRITON_ABOVE_3_7_1"):
            module.TRITON_ABOVE_3_7_1 = True
    return {"simple_gla": chunk_simple_gla, "gla": chunk_gla, "gated_delta_rule": chunk_gated_delta_rule}


def fla_modules() -> list[types.ModuleType]:
    return [m for name, m in list(sys.modules.items()) if (name == "fla" or name.startswith("fla.")) and m]


def _jit_types() -> tuple:
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    return JITFunction, InterpretedFunction  # the latter: what @triton.jit makes under TRITON_INTERPRET=1


def is_kernel(obj: Any) -> bool:
    from triton.runtime.autotuner import Autotuner, Heuristics

    return isinstance(obj, (*_jit_types(), Autotuner, Heuristics))


def layers(obj: Any) -> tuple[list[Any], Any]:
    """(the autotune/heuristics wrappers outermost first, the JITFunction) of a kernel object."""
    jit_types = _jit_types()
    wrappers = []
    while not isinstance(obj, jit_types):
        wrappers.append(obj)
        obj = obj.fn
    return wrappers, obj


def kernel_id(jit: Any) -> str:
    return f"{jit.fn.__module__}:{jit.fn.__name__}"


def resolve(kid: str) -> Any:
    """The JITFunction `kernel_id` names (in a fresh process: the compile workers)."""
    import importlib

    module, name = kid.split(":")
    return layers(getattr(importlib.import_module(module), name))[1]


LAUNCH_OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg", "enable_fp_fusion", "launch_cooperative_grid",
                  "launch_pdl")


def candidates(obj: Any, grid: Any, args: tuple, kwargs: dict) -> tuple[Any, list[tuple[dict, dict, int]]]:
    """What `obj[grid](*args, **kwargs)` could launch: (JITFunction, [(every argument by name, launch
    options, CTAs)]), one entry per autotune config (heuristics applied as triton applies them)."""
    wrappers, jit = layers(obj)
    params = inspect.signature(jit.fn).parameters
    named = dict(zip(params, args))
    options = {k: v for k, v in kwargs.items() if k not in params}
    named.update({k: v for k, v in kwargs.items() if k in params})
    found = [(named, options)]
    for wrapper in wrappers:
        if hasattr(wrapper, "configs"):  # Autotuner
            found = [({**n, **c.kwargs}, {**o, **_config_options(c)}) for (n, o), c in
                     itertools.product(found, wrapper.configs)]
        elif hasattr(wrapper, "values"):  # Heuristics: each value from the arguments seen so far
            found = [({**n, **{k: h(n) for k, h in wrapper.values.items()}}, o) for n, o in found]
    out = []
    for n, o in found:
        for name, param in params.items():
            if name not in n:
                n[name] = param.default
        size = grid(n) if callable(grid) else grid
        ctas = 1
        for dim in (size if isinstance(size, (tuple, list)) else (size,)):
            ctas *= int(dim)
        out.append((n, o, ctas))
    return jit, out


def _config_options(config: Any) -> dict:
    options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
    for name in ("num_ctas", "maxnreg"):
        value = getattr(config, name, None)
        if value not in (None, 1) or (name == "num_ctas" and value not in (None, 1)):
            options[name] = value
    return options


class Swapped:
    """Every kernel object in `modules` (fla's, or slagen's rendered modules) replaced by `make(obj)` for the
    duration; `with Swapped(modules, make): ...`."""

    def __init__(self, modules: list[types.ModuleType], make: Callable[[Any], Any]) -> None:
        self.modules, self.make, self.saved = modules, make, []

    def __enter__(self) -> "Swapped":
        made: dict[int, Any] = {}
        for module in self.modules:
            for name, value in list(vars(module).items()):
                if is_kernel(value):
                    made.setdefault(id(value), self.make(value))
                    self.saved.append((module, name, value))
                    setattr(module, name, made[id(value)])
        return self

    def __exit__(self, *exc: Any) -> None:
        for module, name, value in self.saved:
            setattr(module, name, value)
