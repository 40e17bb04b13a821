"""`KernelPackage`: the runtime behind a generated package (what `generated/<pkg>/__init__.py` calls).

At construction it reads the GPU once and loads the checked dispatch table; each call checks its inputs,
picks the config for the shape bucket and launches that config's rendered kernel. No tuning, no DB.
Without a GPU it runs the kernels under Triton's interpreter when TRITON_INTERPRET=1, and otherwise the
PyTorch reference, each with a warning logged once.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import torch

from .. import env
from ..spec import VariantSpec
from .dispatch import DispatchTable, GpuIdentity, log_once
from .guards import check_inputs
from .loader import import_file


def detect_gpu() -> Optional[GpuIdentity]:
    """The current CUDA device (SLAGEN_GPU="NAME:MAJOR.MINOR" overrides it, for tests), or None."""
    override = env.gpu_override()
    if override:
        name, _, cap = override.rpartition(":")
        try:
            major, minor = (int(x) for x in cap.split("."))
        except ValueError:
            raise ValueError(f"SLAGEN_GPU: expected NAME:MAJOR.MINOR like 'NVIDIA H100 80GB HBM3:9.0', "
                             f"got {override!r}") from None
        return GpuIdentity.from_capability(name, (major, minor))
    if torch.cuda.is_available():
        return GpuIdentity.from_capability(torch.cuda.get_device_name(), torch.cuda.get_device_capability())
    return None


class KernelPackage:
    """One generated package: its specs, dispatch table and lazily imported kernel modules."""

    def __init__(self, root: Path, gpu: Optional[GpuIdentity] = None) -> None:
        self.root = Path(root)
        self.table = DispatchTable.load(self.root / "tables.json")
        self.gpu = gpu if gpu is not None else detect_gpu()
        self.specs = {name: VariantSpec.from_dict(self.table.data["variants"][name]["spec"])
                      for name in self.table.variants()}
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.Lock()

    def module(self, variant: str, config_id: str) -> ModuleType:
        """The rendered module of one config, imported on first use."""
        with self._lock:
            if config_id not in self._modules:
                entry = self.table.config_entry(variant, config_id)
                name = f"{self.table.data['package']}_k_{variant}_{config_id}_{os.getpid()}"
                self._modules[config_id] = import_file(self.root / entry["module"], name)
            return self._modules[config_id]

    def choose(self, variant: str, op: str, q: torch.Tensor, cu_seqlens: Any = None) -> str:
        """The config id for a call on q ([B, T, H, K]); varlen buckets by sequences and mean length."""
        B, T, H = q.shape[0], q.shape[1], q.shape[2]
        if cu_seqlens is not None:
            B = cu_seqlens.numel() - 1
            T = max(1, T // max(B, 1))
        gpu = self.gpu if q.is_cuda else None
        return self.table.choose(variant, op, gpu, str(q.dtype).removeprefix("torch."), B * H, T)

    def call(self, variant: str, op: str, q, k, v, **kwargs: Any):
        spec = self.specs[variant]
        kwargs["scale"] = check_inputs(spec, q, k, v, **kwargs)
        if not q.is_cuda and not env.interpreter_mode():
            log_once(variant, "reference", message=(
                f"slagen: {variant} got CPU tensors and TRITON_INTERPRET is not set; using the PyTorch "
                "reference (slow). Move the tensors to a GPU, or set TRITON_INTERPRET=1 to run the kernels."))
            from ..reference import attention

            return attention(spec, q, k, v, method="chunked" if op == "forward" else "recurrent", **kwargs)
        config_id = self.choose(variant, op, q, kwargs.get("cu_seqlens"))
        return getattr(self.module(variant, config_id), op)(q, k, v, **kwargs)

    def selection(self, batch: int, seqlen: int, heads: int, dtype: str = "bfloat16") -> dict[str, dict[str, Any]]:
        """What each variant and op would pick on this GPU for a problem shape (for `slagen doctor`)."""
        picked: dict[str, dict[str, Any]] = {}
        for name in self.table.variants():
            for op in self.table.data["variants"][name]["ops"]:
                config_id = self.table.choose(name, op, self.gpu, dtype, batch * heads, seqlen)
                picked.setdefault(name, {})[op] = self.table.config_entry(name, config_id)["config"]
        return picked
