"""Kernel plans and their configs.

A `KernelPlan` is one op of one variant (forward, recurrent, backward): the template that renders it,
the spec-derived constants the template reads, and the tunable axes with their allowed values.
A `KernelConfig` is one point of that space, validated: only integers and enum members from the axes
ever reach a template, because configs also come from tuning databases made elsewhere.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from ..spec import VariantSpec


class ConfigError(ValueError):
    """A config value is not one the plan allows; the message names the axis, the value and the choices."""


@dataclass(frozen=True)
class Axis:
    """One tunable axis: integer choices (block sizes, warps) or enum choices (algorithm)."""

    name: str
    choices: tuple[int, ...] | tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError(f"axis {self.name}: needs at least one choice")
        kinds = {type(c) for c in self.choices}
        if kinds not in ({int}, {str}):
            raise ValueError(f"axis {self.name}: choices must be all int or all str, got {self.choices!r}")

    @property
    def is_int(self) -> bool:
        return isinstance(self.choices[0], int)

    def validate(self, value: Any) -> int | str:
        if self.is_int:
            ok = type(value) is int and value in self.choices
        else:
            ok = type(value) is str and value in self.choices
        if not ok:
            raise ConfigError(f"config.{self.name}: expected one of {list(self.choices)}, got {value!r}")
        return value


@dataclass(frozen=True)
class KernelConfig:
    """A validated point of a plan's search space, in axis order (hashable, JSON round-trippable)."""

    items: tuple[tuple[str, int | str], ...]

    def as_dict(self) -> dict[str, int | str]:
        return dict(self.items)

    def __getitem__(self, name: str) -> int | str:
        return self.as_dict()[name]

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Rule:
    """A cross-axis constraint, as data: when every `when` axis holds its value, each `require` axis must
    take one of its listed values (e.g. one_pass keeps the whole state in registers, so block_k = K)."""

    when: tuple[tuple[str, int | str], ...]
    require: tuple[tuple[str, tuple[int | str, ...]], ...]
    reason: str

    def check(self, config: Mapping[str, int | str]) -> None:
        if all(config.get(name) == value for name, value in self.when):
            for name, allowed in self.require:
                if config.get(name) not in allowed:
                    cond = ", ".join(f"{n}={v!r}" for n, v in self.when)
                    raise ConfigError(
                        f"config.{name}: expected one of {list(allowed)} when {cond} ({self.reason}), "
                        f"got {config.get(name)!r}"
                    )


@dataclass(frozen=True)
class KernelPlan:
    """One op of one variant, ready to render with a config."""

    spec: VariantSpec
    op: str  # "forward" | "recurrent" | "backward"
    template: str  # file under templates/
    axes: tuple[Axis, ...]
    default: Mapping[str, int | str]  # the heuristic default config (must be valid)
    constants: Mapping[str, Any] = field(default_factory=dict)  # spec-derived template variables
    rules: tuple[Rule, ...] = ()  # cross-axis constraints, checked after the per-axis ones

    @property
    def name(self) -> str:
        return f"{self.spec.name}.{self.op}"

    def axis(self, name: str) -> Axis:
        for axis in self.axes:
            if axis.name == name:
                return axis
        raise KeyError(name)

    def validate_config(self, data: Mapping[str, Any] | KernelConfig | None, *, partial: bool = False) -> KernelConfig:
        """Check every value against the axes. `partial=True` fills missing axes from the default."""
        if data is None:
            data = {}
            partial = True
        if isinstance(data, KernelConfig):
            data = data.as_dict()
        if not isinstance(data, Mapping):
            raise ConfigError(f"config: expected a JSON object of axis values, got {type(data).__name__}")
        names = [axis.name for axis in self.axes]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"config.{unknown[0]}: unknown axis for {self.name}; axes are {names}")
        items = []
        for axis in self.axes:
            if axis.name in data:
                value = data[axis.name]
            elif partial:
                value = self.default[axis.name]
            else:
                raise ConfigError(f"config.{axis.name}: missing for {self.name}")
            items.append((axis.name, axis.validate(value)))
        config = KernelConfig(tuple(items))
        for rule in self.rules:
            rule.check(config.as_dict())
        return config

    def configs(self) -> Iterator[KernelConfig]:
        """Every valid point of the space (the axes' product less what the rules forbid), in axis order."""
        names = [axis.name for axis in self.axes]
        for values in itertools.product(*(axis.choices for axis in self.axes)):
            data = dict(zip(names, values))
            try:
                yield self.validate_config(data)
            except ConfigError:
                continue

    def default_config(self) -> KernelConfig:
        return self.validate_config(dict(self.default))

    def space_size(self) -> int:
        size = 1
        for axis in self.axes:
            size *= len(axis.choices)
        return size


class UnsupportedSpec(NotImplementedError):
    """No kernel family serves the spec (e.g. a fixed chunk size a family does not generate); the message names
    the argument, the value and what is allowed."""
