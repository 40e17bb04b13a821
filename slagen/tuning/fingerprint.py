"""Which device a trial ran on: a frozen fingerprint, its stable key, and fixtures for GPUs we lack.

The key (`device_key`) keeps results apart whenever their timings may not transfer: another GPU model,
another SM count (MIG slices, cut-down SKUs), another CUDA or driver. The triton version is a separate
field of the tuning cache key, so it is not repeated here; torch is recorded but not keyed (it does not
touch the generated kernels).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping

CPU_INTERPRETER = "cpu-interpreter"

# Architecture family by compute-capability major (and minor where the family splits).
_ARCH_BY_CC = {
    (7, 0): "volta", (7, 2): "volta", (7, 5): "turing",
    (8, 0): "ampere", (8, 6): "ampere", (8, 7): "ampere", (8, 9): "ada",
    (9, 0): "hopper", (10, 0): "blackwell", (10, 3): "blackwell", (12, 0): "blackwell",
}
# Opt-in shared memory per block (bytes) by compute capability, from the CUDA programming guide;
# used when the driver cannot be asked.
_SMEM_OPTIN_BY_CC = {
    (7, 0): 96 * 1024, (7, 5): 64 * 1024, (8, 0): 163 * 1024, (8, 6): 99 * 1024, (8, 7): 163 * 1024,
    (8, 9): 99 * 1024, (9, 0): 227 * 1024, (10, 0): 227 * 1024, (12, 0): 99 * 1024,
}
REGS_PER_SM = 64 * 1024


def arch_family(major: int, minor: int) -> str:
    if (major, minor) in _ARCH_BY_CC:
        return _ARCH_BY_CC[(major, minor)]
    for (ma, _mi), name in sorted(_ARCH_BY_CC.items(), reverse=True):
        if ma == major:
            return name
    return f"sm{major}{minor}"


def _slug(text: str) -> str:
    text = re.sub(r"^nvidia\s+", "", text.strip().lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown"


@dataclass(frozen=True)
class DeviceFingerprint:
    """One device as the tuner sees it. `smem_per_block` and `regs_per_sm` are the pruning limits;
    both are `None` on the CPU interpreter, where they do not apply."""

    name: str
    arch: str  # "hopper", "ampere", ... or "cpu-interpreter"
    compute_capability: tuple[int, int] | None
    sm_count: int
    memory_bytes: int
    driver: str
    cuda: str
    triton: str
    torch: str
    smem_per_block: int | None = None
    regs_per_sm: int | None = None

    @property
    def is_interpreter(self) -> bool:
        return self.arch == CPU_INTERPRETER

    @property
    def gpu_slug(self) -> str:
        """The GPU model alone ("h100-80gb-hbm3"): what a generated package dispatches on."""
        return _slug(self.name)

    @property
    def device_key(self) -> str:
        """Stable text: GPU model, compute capability, SM count, CUDA and driver versions."""
        if self.is_interpreter:
            return CPU_INTERPRETER
        major, minor = self.compute_capability or (0, 0)
        return f"{self.gpu_slug}_sm{major}{minor}_{self.sm_count}sm_cuda{self.cuda}_drv{self.driver}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["compute_capability"] = (
            None if self.compute_capability is None else f"{self.compute_capability[0]}.{self.compute_capability[1]}"
        )
        data["device_key"] = self.device_key
        return data

    def to_record(self):
        """The tuning store's view of this device (`slagen.db.DeviceFingerprint`)."""
        from ..db import DeviceFingerprint as StoredDevice

        cc = "" if self.compute_capability is None else f"{self.compute_capability[0]}.{self.compute_capability[1]}"
        driver = "" if self.is_interpreter else self.driver
        cuda = "" if self.is_interpreter else self.cuda
        return StoredDevice(name=self.name if not self.is_interpreter else CPU_INTERPRETER, compute_capability=cc,
                            sm_count=self.sm_count, memory_bytes=self.memory_bytes, driver_version=driver,
                            cuda_version=cuda, triton_version=self.triton, torch_version=self.torch)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DeviceFingerprint":
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        cc = values.get("compute_capability")
        if isinstance(cc, str):
            major, minor = cc.split(".")
            values["compute_capability"] = (int(major), int(minor))
        elif cc is not None:
            values["compute_capability"] = tuple(int(x) for x in cc)
        return cls(**values)


def _versions() -> tuple[str, str]:
    import torch
    import triton

    return triton.__version__, torch.__version__.split("+")[0]


def _fixture(name: str, cc: tuple[int, int], sms: int, memory: int, driver: str, cuda: str) -> DeviceFingerprint:
    return DeviceFingerprint(
        name=name, arch=arch_family(*cc), compute_capability=cc, sm_count=sms, memory_bytes=memory,
        driver=driver, cuda=cuda, triton="3.9.0", torch="2.11.0",
        smem_per_block=_SMEM_OPTIN_BY_CC[cc], regs_per_sm=REGS_PER_SM,
    )


# Fixtures: real property values of these GPUs (versions are plausible pins), for tests without a GPU.
H100_SXM = _fixture("NVIDIA H100 80GB HBM3", (9, 0), 132, 85_045_133_312, "570.124.06", "12.8")
H200 = _fixture("NVIDIA H200", (9, 0), 132, 150_754_820_096, "570.124.06", "12.8")
A100_SXM = _fixture("NVIDIA A100-SXM4-80GB", (8, 0), 108, 85_089_697_792, "570.124.06", "12.8")
FIXTURES: dict[str, DeviceFingerprint] = {"h100": H100_SXM, "h200": H200, "a100": A100_SXM}


def interpreter_fingerprint() -> DeviceFingerprint:
    import os
    import platform

    triton_version, torch_version = _versions()
    return DeviceFingerprint(
        name=platform.processor() or platform.machine() or "cpu", arch=CPU_INTERPRETER, compute_capability=None,
        sm_count=os.cpu_count() or 1, memory_bytes=0, driver="none", cuda="none",
        triton=triton_version, torch=torch_version,
    )


def _driver_version() -> str:
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # noqa: BLE001 - optional dependency, any failure means "ask nvidia-smi"
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.split("\n")[0].strip()
            if out:
                return out
        except (OSError, subprocess.SubprocessError):
            pass
    return "unknown"


def _cuda_limits(index: int, cc: tuple[int, int]) -> tuple[int, int]:
    """Opt-in shared memory per block and registers per SM, from Triton's driver when it can tell."""
    try:
        import triton

        props = triton.runtime.driver.active.utils.get_device_properties(index)
        return int(props["max_shared_mem"]), int(props.get("max_num_regs", REGS_PER_SM))
    except Exception:  # noqa: BLE001 - fall back to the documented per-architecture values
        return _SMEM_OPTIN_BY_CC.get(cc, 48 * 1024), REGS_PER_SM


def detect(index: int | None = None) -> DeviceFingerprint:
    """The fingerprint of this machine's CUDA device `index` (default: current), or the CPU interpreter's.

    Under TRITON_INTERPRET=1 kernels run on the CPU whatever GPU is present, so that wins.
    """
    import torch

    from .. import env

    if env.interpreter_mode() or not torch.cuda.is_available():
        return interpreter_fingerprint()
    index = torch.cuda.current_device() if index is None else index
    props = torch.cuda.get_device_properties(index)
    cc = (int(props.major), int(props.minor))
    smem, regs = _cuda_limits(index, cc)
    triton_version, torch_version = _versions()
    return DeviceFingerprint(
        name=props.name, arch=arch_family(*cc), compute_capability=cc, sm_count=int(props.multi_processor_count),
        memory_bytes=int(props.total_memory), driver=_driver_version(), cuda=str(torch.version.cuda or "unknown"),
        triton=triton_version, torch=torch_version, smem_per_block=smem, regs_per_sm=regs,
    )
