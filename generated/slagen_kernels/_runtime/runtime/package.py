"""`KernelPackage`: the runtime behind a generated package (what `generated/<pkg>/__init__.py` calls).

At construction it reads the GPU once and loads the checked dispatch table; each call checks its inputs,
picks the config for the shape bucket and launches that config's rendered kernel. No tuning, no DB.
Without a GPU it runs the kernels under Triton's interpreter when TRITON_INTERPRET=1, and otherwise the
caller's CPU path (a generated package hands in its copy of `slagen.reference.attention`), each with a warning
logged once. The runtime itself never imports the reference (docs/imports.md).
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

import torch

from .. import env
from ..spec import VariantSpec
from . import autograd, binaries, cp, layout, library
from ..identity import DeviceFingerprint
from .dispatch import DispatchTable, log_once
from .guards import check_inputs, check_values_if_enabled, default_scale
from .loader import import_file
from .validate import gate_inputs_are_logits


def _meta(x: Any) -> Any:
    """What the input checks read of one argument (never its values)."""
    if isinstance(x, torch.Tensor):
        return (x.shape, x.dtype, x.get_device(), x.is_contiguous())
    if isinstance(x, (tuple, list)):
        return tuple(_meta(y) for y in x)
    return x


def detect_gpu() -> Optional[DeviceFingerprint]:
    """The current CUDA device's fingerprint, with what torch tells at no cost (the driver's version stays
    unknown: ""); SLAGEN_GPU="NAME:MAJOR.MINOR" overrides it, for tests. None without a GPU."""
    override = env.gpu_override()
    if override:
        name, _, cap = override.rpartition(":")
        try:
            major, minor = (int(x) for x in cap.split("."))
        except ValueError:
            raise ValueError(f"SLAGEN_GPU: expected NAME:MAJOR.MINOR like 'NVIDIA H100 80GB HBM3:9.0', "
                             f"got {override!r}") from None
        return DeviceFingerprint(name, f"{major}.{minor}", 0, 0, "", "", "", "")
    if not torch.cuda.is_available():
        return None
    import triton

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return DeviceFingerprint(props.name, f"{props.major}.{props.minor}", int(props.multi_processor_count),
                             int(props.total_memory), "", str(torch.version.cuda or ""), triton.__version__,
                             torch.__version__.split("+")[0])


class KernelPackage:
    """One generated package: its specs, dispatch table and lazily imported kernel modules."""

    def __init__(self, root: Path, gpu: Optional[DeviceFingerprint] = None, *,
                 cpu_path: Optional[Callable[..., Any]] = None) -> None:
        """`cpu_path(spec, q, k, v, method="chunked"|"recurrent", **kwargs) -> (o, final_state)` serves CPU
        tensors when the interpreter is off; without one such a call is refused."""
        self.root = Path(root)
        self.cpu_path = cpu_path
        self.table = DispatchTable.load(self.root / "tables.json")
        self.gpu = gpu if gpu is not None else detect_gpu()
        self.specs = {name: VariantSpec.from_dict(self.table.data["variants"][name]["spec"])
                      for name in self.table.variants()}
        self._modules: dict[tuple[str, str], ModuleType] = {}
        self._checked: dict[tuple, float] = {}
        self._launchers: dict[tuple, Any] = {}  # (variant, op, q's shape, dtype, is_cuda) -> launcher
        self._custom: dict[tuple[str, str], Any] = {}  # (variant, op) -> library.CustomAttention
        self._lock = threading.Lock()
        self._register_custom_ops()

    def module(self, variant: str, config_id: str) -> ModuleType:
        """The rendered module of one config, imported on first use."""
        with self._lock:
            key = (variant, config_id)  # ids are per variant: two variants may share one for their defaults
            if key not in self._modules:
                entry = self.table.config_entry(variant, config_id)
                # a submodule of this runtime: the package's kernels import `launch` relatively from it
                name = f"{__package__}._k_{self.table.data['package']}_{variant}_{config_id}_{os.getpid()}"
                binaries.seed(self.root, self.table.data["package"], variant, config_id, name)  # shipped kernels
                self._modules[key] = import_file(self.root / entry["module"], name)
            return self._modules[key]

    def choose(self, variant: str, op: str, q: torch.Tensor, cu_seqlens: Any = None,
               value_heads: int | None = None) -> str:
        """The config id for a call on q ([B, T, H, K]); varlen buckets by sequences and mean length. The
        kernels run a program row per value head, so grouped value heads (v's heads, `value_heads`) set the
        bucket's B·H."""
        B, T, H = q.shape[0], q.shape[1], value_heads or q.shape[2]
        if cu_seqlens is not None:
            B = cu_seqlens.numel() - 1
            T = max(1, T // max(B, 1))
        gpu = self.gpu if q.is_cuda else None
        return self.table.choose(variant, op, gpu, str(q.dtype).removeprefix("torch."), B * H, T)

    def _checked_scale(self, variant: str, q, k, v, kwargs: dict) -> float:
        """`check_inputs`, memoised on the metadata it reads (shapes, dtypes, devices, layout) so that a
        training loop pays for the full check once per distinct call signature. cu_seqlens' values are
        checked too, so calls with it always run the full check."""
        if kwargs.get("cu_seqlens") is not None:
            return check_inputs(self.specs[variant], q, k, v, **kwargs)
        key = (variant, *(_meta(x) for x in (q, k, v)), *((name, _meta(x)) for name, x in kwargs.items()))
        scale = self._checked.get(key)
        if scale is not None:
            # values change from call to call: never memoised
            check_values_if_enabled(kwargs, gate_inputs_are_logits(self.specs[variant]))
        if scale is None:
            scale = check_inputs(self.specs[variant], q, k, v, **kwargs)
            if len(self._checked) < 1024:
                self._checked[key] = scale
        return scale

    def _register_custom_ops(self) -> None:
        """Register every differentiable variant's ops as torch custom ops up front, so that `torch.compile`
        finds them ready (registration itself cannot be traced). Their real implementations check the
        inputs and dispatch by shape bucket like `call`, at run time."""
        for variant, spec in self.specs.items():
            ops = self.table.data["variants"][variant]["ops"]
            if "backward" not in ops:
                continue
            grads = tuple(self.table.data["variants"][variant].get("grads", ()))
            for op in ("forward", "recurrent"):
                # unique per package folder and GPU too: the op's closures launch this instance's kernels
                where = hashlib.sha256(f"{self.root.resolve()}|{self.gpu}".encode()).hexdigest()[:8]
                name = f"{self.table.data['package']}_{variant}_{op}_{self.table.data['checksum'][:12]}_{where}"
                chunk = self._shared_states_chunk(variant) if op == "forward" else None
                kernels = autograd.Differentiable(self._dispatching(variant, op), self._dispatching(variant, "backward"),
                                                  grads, chunk)
                self._custom[(variant, op)] = library.register(name, kernels, self._checker(spec),
                                                               library.state_shapes(spec))

    def _shared_states_chunk(self, variant: str) -> Optional[int]:
        """The chunk size at which every backward config of the variant keeps the forward's states, or None
        (recompute). The custom ops fix it when they are registered, while the backward config is chosen per
        call; so they keep states only when all of the variant's backward configs agree."""
        entries = [e["config"] for e in self.table.data["variants"][variant]["configs"].values()
                   if e["op"] == "backward"]
        chunks = {e.get("chunk_size") if e.get("states") == "store" else None for e in entries}
        return chunks.pop() if len(chunks) == 1 else None

    def _dispatching(self, variant: str, op: str):
        def launch(q, k, v, **kw):
            return getattr(self.module(variant, self.choose(variant, op, q, kw.get("cu_seqlens"), v.shape[2])),
                           op)(q, k, v, **kw)

        return launch

    @staticmethod
    def _checker(spec: VariantSpec):
        def check(q, k, v, **kw):
            check_inputs(spec, q, k, v, **kw)

        return check

    def call(self, variant: str, op: str, q, k, v, cp_context: Any = None, **kwargs: Any):
        spec = self.specs[variant]
        if cp_context is not None:  # this rank's slice of a context-parallel call: one call per pass
            entry = self.table.data["variants"][variant]
            return cp.attention(spec, functools.partial(self.call, variant, op), q, k, v, kwargs, cp_context,
                                entry.get("grads", ()) if "backward" in entry["ops"] else ())
        differentiable = "backward" in self.table.data["variants"][variant]["ops"]
        if torch.compiler.is_compiling() and differentiable:
            # guards and the bucket choice run inside the op's real implementation, not in the traced graph
            q, k, v = layout.readable(q, k, v, kwargs)
            kwargs["scale"] = default_scale(spec) if kwargs.get("scale") is None else float(kwargs["scale"])
            return self._custom[(variant, op)](q, k, v, kwargs)
        kwargs["scale"] = self._checked_scale(variant, q, k, v, kwargs)
        q, k, v = layout.readable(q, k, v, kwargs)  # in place, or one copy (docs/conventions.md "Heads and strides")
        if not q.is_cuda and not env.interpreter_mode():
            if self.cpu_path is None:
                raise RuntimeError(f"q: {variant} got CPU tensors, TRITON_INTERPRET is not set and this package "
                                   "has no CPU path; move the tensors to a GPU, or set TRITON_INTERPRET=1")
            log_once(variant, "reference", message=(
                f"slagen: {variant} got CPU tensors and TRITON_INTERPRET is not set; using the PyTorch "
                "reference (slow). Move the tensors to a GPU, or set TRITON_INTERPRET=1 to run the kernels."))
            return self.cpu_path(spec, q, k, v, method="chunked" if op == "forward" else "recurrent", **kwargs)
        cu_seqlens = kwargs.get("cu_seqlens")
        key = (variant, op, q.shape, v.shape[2], q.dtype, q.is_cuda)
        fn = self._launchers.get(key) if cu_seqlens is None else None
        if fn is None:
            fn = getattr(self.module(variant, self.choose(variant, op, q, cu_seqlens, v.shape[2])), op)
            if cu_seqlens is None and len(self._launchers) < 1024:
                self._launchers[key] = fn
        if autograd.needs_grad(q, k, v, kwargs) and "backward" in self.table.data["variants"][variant]["ops"]:
            # differentiable call: the backward config is chosen for the same shape bucket
            module = self.module(variant, self.choose(variant, "backward", q, cu_seqlens, v.shape[2]))
            chunk = autograd.stored_states_chunk(module) if op == "forward" else None
            raw = autograd.saves_raw_output(module) and op == "forward"  # the recurrent pass keeps no o_raw
            kernels = autograd.Differentiable(fn, module.backward, tuple(module.GRADS), chunk, raw)
            return autograd.apply(kernels, q, k, v, kwargs)
        return fn(q, k, v, **kwargs)

    def selection(self, batch: int, seqlen: int, heads: int, dtype: str = "bfloat16") -> dict[str, dict[str, Any]]:
        """What each variant and op would pick on this GPU for a problem shape (for `slagen doctor`)."""
        picked: dict[str, dict[str, Any]] = {}
        for name in self.table.variants():
            for op in self.table.data["variants"][name]["ops"]:
                config_id = self.table.choose(name, op, self.gpu, dtype, batch * heads, seqlen)
                picked.setdefault(name, {})[op] = self.table.config_entry(name, config_id)["config"]
        return picked
