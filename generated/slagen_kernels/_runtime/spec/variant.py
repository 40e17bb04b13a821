"""`VariantSpec`: the frozen, validated description of one linear-attention variant.

Every field is checked in `__post_init__`, so `dataclasses.replace(spec, ...)` re-validates too.
Errors name the field, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

SPEC_FORMAT_VERSION = 1

DECAYS = ("none", "fixed", "scalar", "vector", "delta")
HEAD_GATES = ("none", "read", "write", "both")
GATE_SCALES = ("none", "heads")
ZERO_SUM_DECAYS = ("none", "state", "consistent")
OUTPUT_NORMS = ("none", "rms")
# decay = "delta": what g and beta carry. "direct": the log decay g and the strength beta themselves;
# "mamba": fla GatedDeltaNet's parameterisation computed in the kernel, g = -e^{A_log} softplus(a + dt_bias)
# from the gate's input a (passed as g) and beta = sigmoid(b) from its logits b (passed as beta)
DELTA_GATES = ("direct", "mamba")
DTYPES = ("float32", "bfloat16", "float16")
HEAD_DIM_RANGE = (16, 256)
CHUNK_SIZES = (16, 32, 64, 128, 256)


class SpecError(ValueError):
    """A spec field holds a value slagen does not accept; the message names field, value and rule."""


def _fail(field_name: str, value: Any, allowed: str) -> SpecError:
    return SpecError(f"{field_name}: expected {allowed}, got {value!r}")


def _check_choice(field_name: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise _fail(field_name, value, f"one of {choices}")


def _check_bool(field_name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(field_name, value, "true or false")


def _check_positive_float(field_name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise _fail(field_name, value, "a finite number > 0")


@dataclass(frozen=True)
class VariantSpec:
    """One variant: decay family, SLA head gate, ZeroS, fused norm, head dims, chunking, dtypes, features."""

    name: str
    decay: str = "none"
    head_gate: str = "none"
    gate_temperature: float = 1.0
    gate_scale: str = "none"
    zero_sum: bool = False
    zero_sum_decay: str = "none"
    output_norm: str = "none"
    norm_eps: float = 1e-6
    qk_l2norm: bool = False
    delta_gate: str = "direct"
    head_dim_k: int = 64
    head_dim_v: int = 64
    chunk_size: int | str = "auto"
    dtypes: tuple[str, ...] = DTYPES
    initial_state: bool = True
    final_state: bool = True
    varlen: bool = True
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        from .names import check_variant_name  # names imports SpecError from here

        check_variant_name(self.name)
        _check_choice("decay", self.decay, DECAYS)
        _check_choice("head_gate", self.head_gate, HEAD_GATES)
        _check_positive_float("gate_temperature", self.gate_temperature)
        _check_choice("gate_scale", self.gate_scale, GATE_SCALES)
        _check_bool("zero_sum", self.zero_sum)
        _check_choice("zero_sum_decay", self.zero_sum_decay, ZERO_SUM_DECAYS)
        _check_choice("output_norm", self.output_norm, OUTPUT_NORMS)
        _check_positive_float("norm_eps", self.norm_eps)
        _check_bool("qk_l2norm", self.qk_l2norm)
        _check_choice("delta_gate", self.delta_gate, DELTA_GATES)
        for dim_field in ("head_dim_k", "head_dim_v"):
            value = getattr(self, dim_field)
            lo, hi = HEAD_DIM_RANGE
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise _fail(dim_field, value, f"an integer in {lo}..{hi}")
        if self.chunk_size != "auto" and (
            isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size not in CHUNK_SIZES
        ):
            raise _fail("chunk_size", self.chunk_size, f'"auto" or a power of two in {CHUNK_SIZES[0]}..{CHUNK_SIZES[-1]}')
        dtypes = self.dtypes
        if isinstance(dtypes, list):
            object.__setattr__(self, "dtypes", tuple(dtypes))
            dtypes = self.dtypes
        if not isinstance(dtypes, tuple) or not dtypes or any(d not in DTYPES for d in dtypes):
            raise _fail("dtypes", dtypes, f"a non-empty list drawn from {DTYPES}")
        if len(set(dtypes)) != len(dtypes):
            raise _fail("dtypes", dtypes, "each dtype at most once")
        for flag in ("initial_state", "final_state", "varlen"):
            _check_bool(flag, getattr(self, flag))
        if not isinstance(self.description, str):
            raise _fail("description", self.description, "a string")
        self._check_combination()

    def _check_combination(self) -> None:
        if self.head_gate == "none":
            if self.gate_temperature != 1.0:
                raise _fail("gate_temperature", self.gate_temperature, '1.0 when head_gate = "none" (no gate to temper)')
            if self.gate_scale != "none":
                raise _fail("gate_scale", self.gate_scale, '"none" when head_gate = "none" (no gate to scale)')
        if self.delta_gate != "direct" and self.decay != "delta":
            raise _fail("delta_gate", self.delta_gate, '"direct" unless decay = "delta" (the gate of the delta rule)')
        if self.zero_sum:
            if self.decay == "delta":
                raise _fail("decay", self.decay, 'not "delta" with zero_sum = true (ZeroS has no sound delta-rule form)')
            if self.decay == "none" and self.zero_sum_decay != "none":
                raise _fail("zero_sum_decay", self.zero_sum_decay, '"none" when decay = "none"')
            if self.decay != "none" and self.zero_sum_decay == "none":
                raise _fail(
                    "zero_sum_decay", self.zero_sum_decay,
                    f'"state" or "consistent" (experimental) to combine zero_sum with decay = {self.decay!r}',
                )
            if self.zero_sum_decay == "consistent" and self.decay not in ("fixed", "scalar"):
                raise _fail("zero_sum_decay", self.zero_sum_decay,
                            f'"state" with decay = {self.decay!r} ("consistent" needs a scalar decay: fixed or scalar)')
            if self.head_gate in ("write", "both"):
                raise _fail("head_gate", self.head_gate, '"none" or "read" with zero_sum = true (ZeroS weights keys itself)')
        elif self.zero_sum_decay != "none":
            raise _fail("zero_sum_decay", self.zero_sum_decay, '"none" unless zero_sum = true')

    # --- derived facts -------------------------------------------------------------------------

    @property
    def experimental(self) -> bool:
        """Decayed ZeroS is not in the paper: slagen marks it experimental."""
        return self.zero_sum and self.zero_sum_decay != "none"

    @property
    def uses_write_gate(self) -> bool:
        return self.head_gate in ("write", "both")

    @property
    def uses_read_gate(self) -> bool:
        return self.head_gate in ("read", "both")

    def required_inputs(self) -> tuple[str, ...]:
        """Names of the optional call arguments this variant needs (beyond q, k, v)."""
        needed: list[str] = []
        if self.decay == "fixed":
            needed.append("g_gamma")
        elif self.decay in ("scalar", "vector", "delta"):
            needed.append("g")
        if self.decay == "delta":
            needed.append("beta")
        if self.delta_gate == "mamba":
            needed += ["A_log", "dt_bias"]
        if self.uses_read_gate:
            needed.append("read_logits")
        if self.uses_write_gate:
            needed.append("write_logits")
        if self.zero_sum:
            needed += ["zs_logits", "zs_gate1", "zs_gateh"]
        return tuple(needed)

    def optional_inputs(self) -> tuple[str, ...]:
        """Arguments the variant accepts but does not require."""
        extra = ["scale"]
        if self.output_norm == "rms":
            extra.append("norm_weight")
        if self.initial_state:
            extra.append("initial_state")
        if self.varlen:
            extra.append("cu_seqlens")
        return tuple(extra)

    # --- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["dtypes"] = list(self.dtypes)
        return data

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace, description (and delta_gate when "direct") left out: the text the hash is
        taken of."""
        data = self.to_dict()
        data.pop("description")
        if self.delta_gate == "direct":
            data.pop("delta_gate")  # the default is left out: specs from before the field keep their hash
        data["format"] = SPEC_FORMAT_VERSION
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "spec") -> "VariantSpec":
        if not isinstance(data, Mapping):
            raise SpecError(f"{source}: expected a table of spec fields, got {type(data).__name__}")
        data = dict(data)
        data.pop("format", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"{unknown[0]}: unknown field in {source}; allowed fields: {', '.join(sorted(known))}")
        if "name" not in data:
            raise SpecError(f"name: missing in {source}; every spec needs a name")
        if "dtypes" in data and isinstance(data["dtypes"], list):
            data["dtypes"] = tuple(data["dtypes"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "VariantSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(f"spec JSON: not valid JSON ({err})") from None
        return cls.from_dict(data, source="spec JSON")
