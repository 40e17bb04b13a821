"""What the store holds, as frozen dataclasses, with the field checks shared by record, import and merge.

Configs and specs are data from elsewhere: the store checks they are JSON objects and never reads them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Mapping

from ..identity import DeviceFingerprint, TuningKey
from ..spec.names import TOKENS
from .errors import RecordError
from .keys import canonical_json, content_hash

STATUSES = ("ok", "compile_error", "out_of_resources", "mismatch", "timeout")
_UID_RE = re.compile(r"^[0-9a-f]{64}$")
# JSON has no NaN or infinity; a mismatch may well report an infinite error, so they travel as strings.
_NONFINITE_TO_TEXT = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_TEXT_TO_NONFINITE = {text: float(key) for key, text in _NONFINITE_TO_TEXT.items()}


# --- field checks ------------------------------------------------------------------------------


def check_text(name: str, value: Any, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise RecordError(name, f"expected a {'' if allow_empty else 'non-empty '}string, got {value!r}")
    return value


def check_optional_text(name: str, value: Any) -> str | None:
    return None if value is None else check_text(name, value, allow_empty=True)


def check_token(kind: str, name: str, value: Any, *, optional: bool = False) -> Any:
    """A string from a record that must match the strict grammar `kind` of `slagen.spec.names.TOKENS`:
    tuning data comes from other machines, and none of it may carry code into generated files."""
    if optional and value is None:
        return None
    token = TOKENS[kind]
    if not token.matches(value):
        raise RecordError(name, f"expected {token.what}, got {value!r}")
    return value


def _check_config_values(name: str, value: Any, depth: int = 0) -> None:
    """Every key in a config is an identifier and every string a short plain word, at any depth (the store
    keeps configs as they are; codegen validates them against the search space before rendering)."""
    if depth > 8:
        raise RecordError(name, "nested more than 8 levels deep")
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_token("config_key", f"{name} key", key)
            _check_config_values(f"{name}.{key}", item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_config_values(name, item, depth + 1)
    elif isinstance(value, str):
        check_token("config_text", name, value)
    elif not (value is None or isinstance(value, (bool, int, float))):
        raise RecordError(name, f"expected JSON numbers, booleans, null, words, lists or objects, got {value!r}")


INT64_MAX = 2**63 - 1  # what every database's BIGINT holds
INT32_MAX = 2**31 - 1  # INTEGER columns (sm_count, n_repeats) on PostgreSQL


def check_count(name: str, value: Any, *, limit: int = INT32_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecordError(name, f"expected an integer >= 0, got {value!r}")
    if value > limit:
        raise RecordError(name, f"expected an integer <= {limit} (what the database column holds), got {value!r}")
    return value


def check_optional_int(name: str, value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not -INT64_MAX - 1 <= value <= INT64_MAX):
        raise RecordError(name, f"expected an integer or null (in -2^63..2^63-1), got {value!r}")
    return value


def check_optional_float(name: str, value: Any) -> float | None:
    """A number, null, or one of "NaN", "Infinity", "-Infinity" (how JSON carries non-finite values)."""
    if value is None:
        return None
    if isinstance(value, str) and value in _TEXT_TO_NONFINITE:
        return _TEXT_TO_NONFINITE[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(name, f'expected a number, null, "NaN" or "Infinity", got {value!r}')
    try:
        return float(value)
    except OverflowError:
        raise RecordError(name, f"expected a number a float can hold, got an integer of {len(str(value))} digits") from None


def check_json_object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise RecordError(name, f"expected a JSON object, got {type(value).__name__}")
    try:
        canonical_json(value)
    except (TypeError, ValueError, RecursionError) as err:
        raise RecordError(name, f"not representable as JSON ({type(err).__name__}: {str(err)[:100]})") from None
    return dict(value)


def check_config(name: str, value: Any) -> dict[str, Any]:
    """A tuned config: a JSON object of identifier keys and scalar values (see `_check_config_values`)."""
    config = check_json_object(name, value)
    _check_config_values(name, config)
    return config


def float_to_json(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return _NONFINITE_TO_TEXT[repr(value)]


def utc_naive(value: Any, name: str = "created_at") -> datetime:
    """Timestamps are stored as naive UTC so SQLite and PostgreSQL agree to the microsecond."""
    if not isinstance(value, datetime):
        raise RecordError(name, f"expected a datetime, got {value!r}")
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def timestamp_to_text(value: datetime) -> str:
    return utc_naive(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def timestamp_from_text(name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise RecordError(name, f"expected an ISO 8601 UTC timestamp string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RecordError(
            name, f"expected an ISO 8601 UTC timestamp like 2026-01-31T12:00:00.000000Z, got {value!r}") from None
    if parsed.tzinfo is None:
        raise RecordError(name, f"expected a UTC timestamp ending in Z, got {value!r}")
    return utc_naive(parsed)


def _require_keys(data: Mapping[str, Any], required: tuple[str, ...], allowed: tuple[str, ...], where: str) -> None:
    missing = [key for key in required if key not in data]
    if missing:
        raise RecordError(f"{where}{missing[0]}", "missing")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise RecordError(f"{where}{unknown[0]}", f"unknown field; allowed: {', '.join(allowed)}")


def spec_content_hash(spec: Mapping[str, Any]) -> str:
    """The hash a variant's spec JSON is stored under: sha256 of its canonical JSON without the free-text
    description, as `VariantSpec.spec_hash` computes it (16 hex digits)."""
    import hashlib
    import json

    data = {key: value for key, value in spec.items() if key != "description"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def check_spec_hash(spec_hash: str, spec: Mapping[str, Any], where: str = "spec_hash") -> None:
    """A variant's spec must hash to the hash it travels under: otherwise trials of one spec would be
    built into the package of another."""
    actual = spec_content_hash(spec)
    if actual != spec_hash:
        raise RecordError(where, f"{spec_hash!r} does not match its spec (which hashes to {actual!r}); the "
                                 "variant line was edited or written by something else than slagen")


# --- records -----------------------------------------------------------------------------------


def check_device(device: Any, where: str = "device.") -> DeviceFingerprint:
    """A device fingerprint (`slagen.identity.DeviceFingerprint`) whose fields match the strict grammars of
    `slagen.spec.names.TOKENS`: it comes from other machines, and none of it may carry code into generated
    files. Empty versions mean unknown."""
    if not isinstance(device, DeviceFingerprint):
        raise RecordError(where.rstrip("."), f"expected a DeviceFingerprint, got {type(device).__name__}")
    check_token("device_name", f"{where}name", device.name)
    check_token("compute_capability", f"{where}compute_capability", device.compute_capability)
    for text_field in ("driver_version", "cuda_version", "triton_version", "torch_version"):
        check_token("version", f"{where}{text_field}", getattr(device, text_field))
    check_count(f"{where}sm_count", device.sm_count)
    check_count(f"{where}memory_bytes", device.memory_bytes, limit=INT64_MAX)
    return device


def device_from_dict(data: Any, where: str = "device.") -> DeviceFingerprint:
    if not isinstance(data, Mapping):
        raise RecordError(where.rstrip("."), f"expected a JSON object, got {type(data).__name__}")
    _require_keys(data, DeviceFingerprint.FIELDS, DeviceFingerprint.FIELDS, where)
    return check_device(DeviceFingerprint.from_dict(data), where)


@dataclass(frozen=True)
class KernelRef:
    """Which kernel a trial timed: the variant (by spec hash), its plan, and the template's hash."""

    spec_hash: str
    plan_name: str
    template_hash: str

    def __post_init__(self) -> None:
        check_token("hash", "spec_hash", self.spec_hash)
        check_token("plan_name", "plan_name", self.plan_name)
        check_token("hash", "template_hash", self.template_hash)


# The JSON fields of a trial, in the order an exported line lists them.
TRIAL_FIELDS = (
    "trial_uid", "spec_hash", "plan_name", "template_hash", "device", "shape_bucket", "dtype", "config",
    "status", "median_ms", "p20_ms", "p80_ms", "n_repeats", "max_error", "sampler", "seed", "host",
    "slagen_version", "created_at",
)
_TRIAL_REQUIRED = ("spec_hash", "plan_name", "template_hash", "device", "shape_bucket", "dtype", "config",
                   "status", "slagen_version", "created_at")


@dataclass(frozen=True)
class TrialRecord:
    """One timed (or failed) candidate config. `trial_uid` hashes every other field, so copies dedupe."""

    kernel: KernelRef
    device: DeviceFingerprint
    shape_bucket: str
    dtype: str
    config: Mapping[str, Any]
    status: str
    median_ms: float | None
    p20_ms: float | None
    p80_ms: float | None
    n_repeats: int
    max_error: float | None
    sampler: str | None
    seed: int | None
    host: str | None
    slagen_version: str
    created_at: datetime
    trial_uid: str = field(default="")

    def __post_init__(self) -> None:
        check_device(self.device)
        check_token("shape_bucket", "shape_bucket", self.shape_bucket)
        check_token("dtype", "dtype", self.dtype)
        object.__setattr__(self, "config", check_config("config", self.config))
        if self.status not in STATUSES:
            raise RecordError("status", f"expected one of {STATUSES}, got {self.status!r}")
        # SQLite stores NaN as NULL, so NaN is normalised here: a NaN error is unbounded (inf), a NaN time none.
        for name in ("median_ms", "p20_ms", "p80_ms", "max_error"):
            value = check_optional_float(name, getattr(self, name))
            if value is not None and math.isnan(value):
                value = math.inf if name == "max_error" else None
            object.__setattr__(self, name, value)
        if self.status == "ok" and (self.median_ms is None or not math.isfinite(self.median_ms) or self.median_ms < 0):
            raise RecordError("median_ms", f"an 'ok' trial needs a finite time >= 0, got {self.median_ms!r}")
        check_count("n_repeats", self.n_repeats)
        check_token("sampler", "sampler", self.sampler, optional=True)
        check_optional_int("seed", self.seed)
        check_token("host", "host", self.host, optional=True)
        check_token("required_version", "slagen_version", self.slagen_version)
        object.__setattr__(self, "created_at", utc_naive(self.created_at))
        expected = self.compute_uid()
        if not self.trial_uid:
            object.__setattr__(self, "trial_uid", expected)
        elif self.trial_uid != expected:
            raise RecordError("trial_uid", f"{self.trial_uid!r} does not match the trial's content (expected "
                                           f"{expected!r}); drop the field to recompute it")

    @property
    def group(self) -> TuningKey:
        """What `best` is keyed by: the tuning key (kernel, device, shape bucket, dtype)."""
        k = self.kernel
        return TuningKey(k.spec_hash, k.plan_name, k.template_hash, self.device, self.dtype, self.shape_bucket)

    def to_json_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "trial_uid": self.trial_uid,
            "spec_hash": self.kernel.spec_hash,
            "plan_name": self.kernel.plan_name,
            "template_hash": self.kernel.template_hash,
            "device": self.device.to_dict(),
            "shape_bucket": self.shape_bucket,
            "dtype": self.dtype,
            "config": dict(self.config),
            "status": self.status,
            "median_ms": float_to_json(self.median_ms),
            "p20_ms": float_to_json(self.p20_ms),
            "p80_ms": float_to_json(self.p80_ms),
            "n_repeats": self.n_repeats,
            "max_error": float_to_json(self.max_error),
            "sampler": self.sampler,
            "seed": self.seed,
            "host": self.host,
            "slagen_version": self.slagen_version,
            "created_at": timestamp_to_text(self.created_at),
        }
        return data

    def compute_uid(self) -> str:
        # Null fields are left out so a column added later (as null for old rows) keeps old uids stable.
        data = {key: value for key, value in self.to_json_dict().items() if value is not None and key != "trial_uid"}
        return content_hash(data)

    @classmethod
    def from_json_dict(cls, data: Any) -> "TrialRecord":
        if not isinstance(data, Mapping):
            raise RecordError("trial", f"expected a JSON object, got {type(data).__name__}")
        _require_keys(data, _TRIAL_REQUIRED, TRIAL_FIELDS + ("type",), "")
        uid = data.get("trial_uid", "")
        if uid and (not isinstance(uid, str) or not _UID_RE.match(uid)):
            raise RecordError("trial_uid", f"expected 64 lowercase hex digits, got {uid!r}")
        return cls(
            kernel=KernelRef(data["spec_hash"], data["plan_name"], data["template_hash"]),
            device=device_from_dict(data["device"]),
            shape_bucket=data["shape_bucket"],
            dtype=data["dtype"],
            config=data["config"],
            status=data["status"],
            median_ms=data.get("median_ms"),
            p20_ms=data.get("p20_ms"),
            p80_ms=data.get("p80_ms"),
            n_repeats=data.get("n_repeats", 0),
            max_error=data.get("max_error"),
            sampler=data.get("sampler"),
            seed=data.get("seed"),
            host=data.get("host"),
            slagen_version=data["slagen_version"],
            created_at=timestamp_from_text("created_at", data["created_at"]),
            trial_uid=uid,
        )

    def sort_key(self) -> tuple:
        """Export and merge order: grouped by kernel, device, bucket, dtype; then by time; uid breaks ties."""
        k = self.kernel
        return (k.spec_hash, k.plan_name, k.template_hash, self.device.name, self.device.stable_hash(), self.shape_bucket,
                self.dtype, self.created_at, self.trial_uid)


@dataclass(frozen=True)
class BestConfig:
    """The winning config of one (kernel, device, bucket, dtype) group and the trial that won it."""

    config: dict[str, Any]
    trial: TrialRecord

    @property
    def median_ms(self) -> float:
        assert self.trial.median_ms is not None  # best only ever points at an ok trial
        return self.trial.median_ms


@dataclass(frozen=True)
class StoreInfo:
    """What `slagen db info` reports."""

    url: str  # password hidden
    dialect: str
    schema_version: int
    code_schema_version: int
    revision: str
    variants: int
    kernels: int
    devices: int
    trials: int
    trials_by_status: dict[str, int]
    best: int

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
