"""A stand-in for Triton's active driver that reports a GPU target which is not here.

With it active (`triton.runtime.driver.set_active`) the JIT's own path runs on a CPU-only machine: its
binder specialises the arguments, keys its caches and calls `triton.compile` for `GPUTarget("cuda", arch,
32)` exactly as it would on that GPU (ptxas ships with triton, no driver is needed). Only what touches a
GPU is stood in for: loading a binary returns a dummy handle and launching does nothing (`launches` counts).
`slagen build` compiles a package's shipped kernels through it; tests use it to watch the shipped path.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

SHARED_MEMORY = {80: 166912, 86: 101376, 89: 101376, 90: 232448, 100: 232448, 120: 101376}  # bytes per block


class _Utils:
    def __init__(self, arch: int) -> None:
        self.arch = arch
        self.loaded: list[str] = []

    def get_device_properties(self, device: int) -> dict[str, int]:
        return {"max_shared_mem": SHARED_MEMORY.get(self.arch, 101376), "multiprocessor_count": 132,
                "max_num_regs": 65536, "warpSize": 32, "sm_clock_rate": 0, "mem_clock_rate": 0, "mem_bus_width": 0}

    def load_binary(self, name: str, kernel: bytes, shared: int, device: int) -> tuple[int, int, int, int, int]:
        self.loaded.append(name)
        return 0, 0, 0, 0, 1024  # module, function, registers, spills, max threads per block

    def unload_module(self, module: Any) -> None:
        pass


def target_driver(arch: int) -> Any:
    """A DriverBase whose target is `sm_<arch>`; nothing it launches runs."""
    from triton.backends.compiler import GPUTarget
    from triton.backends.driver import DriverBase

    class TargetDriver(DriverBase):
        @classmethod
        def is_active(cls) -> bool:
            return False

        def __init__(self) -> None:
            self.utils = _Utils(arch)
            self.launches = 0

        def map_python_to_cpp_type(self, ty: str) -> str:
            raise NotImplementedError

        def get_current_target(self) -> Any:
            return GPUTarget("cuda", arch, 32)

        def get_active_torch_device(self) -> Any:
            import torch

            return torch.device("cpu")

        def get_benchmarker(self) -> Any:
            raise NotImplementedError

        def get_current_device(self) -> int:
            return 0

        def set_current_device(self, device: int) -> None:
            pass

        def get_current_stream(self, device: Any = None) -> int:
            return 0

        def get_device_interface(self) -> Any:
            raise NotImplementedError

        def launcher_cls(self, src: Any, metadata: Any) -> Any:
            def launch(*args: Any) -> None:
                self.launches += 1

            return launch

    return TargetDriver()


@contextlib.contextmanager
def active_target(arch: int) -> Iterator[Any]:
    """Triton's JIT sees `sm_<arch>` for the duration (process-wide: one at a time)."""
    from triton.runtime import driver

    stand_in = target_driver(arch)
    previous = driver._active
    driver.set_active(stand_in)
    try:
        yield stand_in
    finally:
        driver._active = previous
