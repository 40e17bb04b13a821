"""The search space of one kernel plan on one device, pruned analytically before anything compiles.

Axes come from `plan.axes`; every point is built with `plan.validate_config`, so only validated integers
and enum members ever reach a template. A plan is one op (forward, recurrent, ...) and may launch several
kernels; its config covers all of them, so the chunk size is tuned jointly and the objective is the whole
op's time. The resource model reads axes by role, from the name's suffix:

    chunk_size | BT -> rows of a chunk       block_k | BK -> K tile     block_v | BV -> V tile
    num_warps        -> warps per program    num_stages   -> software-pipeline depth

A prefix names the kernel an axis belongs to (`h_num_warps`, `o_block_v`); an unprefixed axis applies to
every kernel of the op. A missing K/V tile means the full head dim. Plans whose kernels differ from this
model can pass their own `estimator`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..codegen import Axis, ConfigError, KernelConfig, KernelPlan
from .fingerprint import DeviceFingerprint

ROLE_SUFFIXES = {
    "chunk_size": "bt", "bt": "bt", "block_t": "bt",
    "block_k": "bk", "bk": "bk",
    "block_v": "bv", "bv": "bv",
    "num_warps": "warps", "num_stages": "stages",
}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
MAX_REGS_PER_THREAD = 255
# Registers a program needs beyond its fp32 accumulators (addresses, indices, loop state).
BASE_REGS_PER_THREAD = 40
# On the interpreter warps and pipelining do nothing: keep one cheap setting of each.
INTERPRETER_MAX_WARPS = 4
MAX_ENUMERATED = 200_000


@dataclass(frozen=True)
class ResourceEstimate:
    """The worst kernel of an op: its shared memory per program and registers per thread."""

    smem_bytes: int
    regs_per_thread: int
    threads: int

    def violation(self, device: DeviceFingerprint) -> str | None:
        """Why this does not fit the device, or None. The interpreter has no such limits."""
        if device.is_interpreter:
            return None
        if device.smem_per_block is not None and self.smem_bytes > device.smem_per_block:
            return f"shared memory {self.smem_bytes} B > {device.smem_per_block} B per block on {device.name}"
        if self.regs_per_thread > MAX_REGS_PER_THREAD:
            return f"~{self.regs_per_thread} registers per thread > {MAX_REGS_PER_THREAD} (would spill)"
        if device.regs_per_sm is not None and self.regs_per_thread * self.threads > device.regs_per_sm:
            return f"{self.regs_per_thread * self.threads} registers per program > {device.regs_per_sm} per SM"
        return None


Estimator = Callable[[KernelPlan, KernelConfig, str], ResourceEstimate]


def role_of(axis_name: str) -> tuple[str, str] | None:
    """(kernel prefix, role) for an axis the resource model understands, else None."""
    lower = axis_name.lower()
    for suffix, role in sorted(ROLE_SUFFIXES.items(), key=lambda item: -len(item[0])):
        if lower == suffix:
            return "", role
        if lower.endswith("_" + suffix):
            return lower[: -len(suffix) - 1], role
    return None


def _kernel_groups(plan: KernelPlan, config: KernelConfig) -> dict[str, dict[str, int]]:
    shared: dict[str, int] = {}
    groups: dict[str, dict[str, int]] = {}
    for name, value in config.items:
        found = role_of(name)
        if found is None or not isinstance(value, int):
            continue
        prefix, role = found
        (shared if prefix == "" else groups.setdefault(prefix, {}))[role] = value
    if not groups:
        return {"": shared}
    return {prefix: {**shared, **roles} for prefix, roles in groups.items()}


def estimate_resources(plan: KernelPlan, config: KernelConfig, dtype: str) -> ResourceEstimate:
    """A chunked-linear-attention model per kernel of the op; the op needs what its largest kernel needs.

    Pipelined operand tiles (q, k: [BT, BK]; v: [BT, BV]) take `num_stages` buffers in the input dtype;
    the state [BK, BV] and scores [BT, BT] are dot operands staged once. Accumulators are fp32 and held
    in registers across the program's threads: o [BT, BV], state [BK, BV], scores [BT, BT]. A kernel
    without a chunk axis steps one token at a time (BT = 1).
    """
    elt = DTYPE_BYTES.get(dtype, 4)
    head_k, head_v = plan.spec.head_dim_k, plan.spec.head_dim_v
    worst = ResourceEstimate(0, 0, 0)
    for roles in _kernel_groups(plan, config).values():
        bt = roles.get("bt", 1)  # no chunk axis: a step-by-step (recurrent) kernel, one token per step
        bk, bv = roles.get("bk", head_k), roles.get("bv", head_v)
        warps, stages = roles.get("warps", 4), roles.get("stages", 1)
        smem = stages * (2 * bt * bk + bt * bv) * elt + (bk * bv + bt * bt) * elt
        threads = 32 * warps
        regs = BASE_REGS_PER_THREAD + -(-(bt * bv + bk * bv + bt * bt) // threads)
        worst = ResourceEstimate(max(worst.smem_bytes, smem), max(worst.regs_per_thread, regs),
                                 max(worst.threads, threads))
    return worst


def narrowed_axes(plan: KernelPlan, device: DeviceFingerprint) -> tuple[Axis, ...]:
    """The plan's axes, with warps and stages cut to one cheap setting range on the interpreter."""
    if not device.is_interpreter:
        return plan.axes
    axes = []
    for axis in plan.axes:
        found = role_of(axis.name)
        choices = axis.choices
        if found is not None and axis.is_int:
            if found[1] == "stages":
                choices = (min(choices),)
            elif found[1] == "warps":
                choices = tuple(c for c in choices if c <= INTERPRETER_MAX_WARPS) or (min(choices),)
        axes.append(Axis(axis.name, tuple(choices)))
    return tuple(axes)


@dataclass(frozen=True)
class SearchSpace:
    """Feasible validated configs of one plan for one device and dtype, and what was pruned and why."""

    plan: KernelPlan
    device: DeviceFingerprint
    dtype: str
    axes: tuple[Axis, ...]
    configs: tuple[KernelConfig, ...]
    pruned: tuple[tuple[KernelConfig, str], ...] = field(repr=False)
    default: KernelConfig

    def __len__(self) -> int:
        return len(self.configs)

    def __contains__(self, config: object) -> bool:
        return config in self._config_set

    @property
    def _config_set(self) -> frozenset[KernelConfig]:
        cached = self.__dict__.get("_set")
        if cached is None:
            cached = frozenset(self.configs)
            object.__setattr__(self, "_set", cached)
        return cached

    def validate(self, data: object) -> KernelConfig:
        """A config from outside (a DB, a user): the plan's checks, then feasibility on this device."""
        config = self.plan.validate_config(data)  # type: ignore[arg-type]
        if config not in self:
            reason = dict(self.pruned).get(config, "outside the narrowed axes for this device")
            raise ConfigError(f"config {config.to_json()}: pruned for {self.device.name}: {reason}")
        return config


def _points(axes: Iterable[Axis]) -> Iterable[dict[str, int | str]]:
    axes = tuple(axes)
    for values in itertools.product(*(axis.choices for axis in axes)):
        yield {axis.name: value for axis, value in zip(axes, values)}


def build_space(
    plan: KernelPlan, device: DeviceFingerprint, dtype: str, *, estimator: Estimator | None = None,
) -> SearchSpace:
    """Enumerate the plan's (narrowed) axes and drop every config over the device's limits."""
    estimator = estimator or estimate_resources
    axes = narrowed_axes(plan, device)
    size = 1
    for axis in axes:
        size *= len(axis.choices)
    if size > MAX_ENUMERATED:
        raise ValueError(f"{plan.name}: search space of {size} configs is too large to enumerate")
    keep: list[KernelConfig] = []
    pruned: list[tuple[KernelConfig, str]] = []
    for point in _points(axes):
        try:
            config = plan.validate_config(point)
        except ConfigError:  # a cross-axis rule of the plan forbids it: never a candidate
            continue
        reason = estimator(plan, config, dtype).violation(device)
        if reason is None:
            keep.append(config)
        else:
            pruned.append((config, reason))
    if not keep:
        raise ValueError(f"{plan.name}: every config is over the limits of {device.name} ({pruned[0][1]})")
    default = plan.validate_config(dict(plan.default))
    if default not in keep:
        # Closest feasible config to the heuristic default: most axes equal, then the first such.
        default = max(keep, key=lambda c: sum(a == b for a, b in zip(c.items, default.items)))
    return SearchSpace(plan, device, dtype, axes, tuple(keep), tuple(pruned), default)
