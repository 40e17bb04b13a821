"""The device a trial runs on: detected here, fixtures for GPUs we lack.

The fingerprint itself is `slagen.identity.DeviceFingerprint`, the one device identity of the tuner, the
store and the runtime. Its stable hash keeps results apart whenever their timings may not transfer:
another GPU model, SM count (MIG slices, cut-down SKUs), driver, CUDA, triton or torch version.
"""

from __future__ import annotations

import shutil
import subprocess

from ..identity import CPU_INTERPRETER, DeviceFingerprint, arch_family

__all__ = ["A100_SXM", "CPU_INTERPRETER", "FIXTURES", "H100_SXM", "H200", "DeviceFingerprint", "arch_family",
           "detect", "interpreter_fingerprint"]

# Opt-in shared memory per block (bytes) by compute capability, from the CUDA programming guide;
# used when the driver cannot be asked.
_SMEM_OPTIN_BY_CC = {
    (7, 0): 96 * 1024, (7, 5): 64 * 1024, (8, 0): 163 * 1024, (8, 6): 99 * 1024, (8, 7): 163 * 1024,
    (8, 9): 99 * 1024, (9, 0): 227 * 1024, (10, 0): 227 * 1024, (12, 0): 99 * 1024,
}
REGS_PER_SM = 64 * 1024


def _versions() -> tuple[str, str]:
    import torch
    import triton

    return triton.__version__, torch.__version__.split("+")[0]


def _fixture(name: str, cc: tuple[int, int], sms: int, memory: int, driver: str, cuda: str) -> DeviceFingerprint:
    return DeviceFingerprint(
        name=name, compute_capability=f"{cc[0]}.{cc[1]}", sm_count=sms, memory_bytes=memory,
        driver_version=driver, cuda_version=cuda, triton_version="3.9.0", torch_version="2.11.0",
        smem_per_block=_SMEM_OPTIN_BY_CC[cc], regs_per_sm=REGS_PER_SM,
    )


# Fixtures: real property values of these GPUs (versions are plausible pins), for tests without a GPU.
H100_SXM = _fixture("NVIDIA H100 80GB HBM3", (9, 0), 132, 85_045_133_312, "570.124.06", "12.8")
H200 = _fixture("NVIDIA H200", (9, 0), 132, 150_754_820_096, "570.124.06", "12.8")
A100_SXM = _fixture("NVIDIA A100-SXM4-80GB", (8, 0), 108, 85_089_697_792, "570.124.06", "12.8")
FIXTURES: dict[str, DeviceFingerprint] = {"h100": H100_SXM, "h200": H200, "a100": A100_SXM}


def interpreter_fingerprint() -> DeviceFingerprint:
    """Triton's CPU interpreter: no GPU limits to prune by; its times mean nothing beyond this machine."""
    import os

    triton_version, torch_version = _versions()
    return DeviceFingerprint(
        name=CPU_INTERPRETER, compute_capability="", sm_count=os.cpu_count() or 1, memory_bytes=0,
        driver_version="", cuda_version="", triton_version=triton_version, torch_version=torch_version,
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
    return ""  # unknown


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
        name=props.name, compute_capability=f"{cc[0]}.{cc[1]}", sm_count=int(props.multi_processor_count),
        memory_bytes=int(props.total_memory), driver_version=_driver_version(),
        cuda_version=str(torch.version.cuda or ""), triton_version=triton_version, torch_version=torch_version,
        smem_per_block=smem, regs_per_sm=regs,
    )
