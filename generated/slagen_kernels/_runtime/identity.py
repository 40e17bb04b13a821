"""One device identity and one key, shared by the tuner, the tuning store and the runtime (stdlib only).

`DeviceFingerprint` is everything about a GPU and its software stack that can change timings; the
store keeps one row per fingerprint, the tuner measures on one, a generated package detects one (with
what it can read cheaply: unknown text stays empty) and dispatches on its GPU name, then its family.
`TuningKey` is what a tuned config is cached under: the `best` table's key (kernel, device, shape bucket,
dtype), the dispatch tables' record of each tuned entry and the Optuna study names all use it. Both are
frozen and hash stably (`stable_hash`, over their fields by name), as Helion's autotune cache keys do.
Checking the values of fingerprints that came from elsewhere is the store's job (`slagen.db.records`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

CPU_INTERPRETER = "cpu-interpreter"
# Architecture family by compute capability, where the family splits within a major version.
_ARCH_BY_CC = {
    (7, 0): "volta", (7, 2): "volta", (7, 5): "turing",
    (8, 0): "ampere", (8, 6): "ampere", (8, 7): "ampere", (8, 9): "ada",
    (9, 0): "hopper", (10, 0): "blackwell", (10, 3): "blackwell", (12, 0): "blackwell",
}


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, no NaN: the one text a value hashes as."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def stable_hash(value: Any, *, length: int = 64) -> str:
    """sha256 of the canonical JSON of `value`."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def arch_family(major: int, minor: int) -> str:
    if (major, minor) in _ARCH_BY_CC:
        return _ARCH_BY_CC[(major, minor)]
    for (ma, _mi), name in sorted(_ARCH_BY_CC.items(), reverse=True):
        if ma == major:
            return name
    return f"sm{major}{minor}"


@dataclass(frozen=True)
class DeviceFingerprint:
    """A GPU and its software stack. `compute_capability` is "9.0" ("" on the CPU interpreter); empty text
    means unknown. `smem_per_block` and `regs_per_sm` are the tuner's pruning limits (None where they do
    not apply): read from the device, not part of its identity, its hash or its stored row."""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "name", "compute_capability", "sm_count", "memory_bytes", "driver_version", "cuda_version",
        "triton_version", "torch_version",
    )

    name: str
    compute_capability: str
    sm_count: int
    memory_bytes: int
    driver_version: str
    cuda_version: str
    triton_version: str
    torch_version: str
    smem_per_block: int | None = field(default=None, compare=False)
    regs_per_sm: int | None = field(default=None, compare=False)

    @property
    def is_interpreter(self) -> bool:
        return self.name == CPU_INTERPRETER

    @property
    def capability(self) -> tuple[int, int] | None:
        if not self.compute_capability:
            return None
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)

    @property
    def family(self) -> str:
        """What dispatch falls back to when this GPU has no table of its own: "sm90"."""
        cc = self.capability
        return f"sm{cc[0]}{cc[1]}" if cc else "unknown"

    @property
    def arch(self) -> str:
        """The architecture's name ("hopper", ...) or "cpu-interpreter"."""
        cc = self.capability
        return CPU_INTERPRETER if self.is_interpreter else arch_family(*cc) if cc else "unknown"

    @property
    def gpu_slug(self) -> str:
        """The GPU model alone ("h100-80gb-hbm3"), for file names."""
        text = re.sub(r"^nvidia\s+", "", self.name.strip().lower())
        return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown"

    @property
    def device_key(self) -> str:
        """Readable text for reports and lock files: model, capability, SMs, CUDA and driver."""
        if self.is_interpreter:
            return CPU_INTERPRETER
        return (f"{self.gpu_slug}_{self.family}_{self.sm_count}sm_cuda{self.cuda_version}"
                f"_drv{self.driver_version}")

    def to_dict(self) -> dict[str, Any]:
        """The identity fields (the store's columns), by name."""
        return {name: getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DeviceFingerprint":
        return cls(**{name: data[name] for name in cls.FIELDS})

    def stable_hash(self) -> str:
        return stable_hash(self.to_dict())


@dataclass(frozen=True)
class TuningKey:
    """Everything a tuned config depends on: the variant (spec hash), the op's plan and template, the
    device with its software stack (driver, CUDA, triton, torch), the dtype and the shape bucket."""

    spec_hash: str
    plan_name: str
    template_hash: str
    device: DeviceFingerprint
    dtype: str
    shape_bucket: str

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {"device": self.device.to_dict()}

    def stable_hash(self) -> str:
        return stable_hash(self.to_dict())
