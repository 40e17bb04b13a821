"""Pick a tuned config per call: GPU at import, shape bucket per call, no tuning, no database.

A generated package ships `tables.json`: for each variant and op, the configs it rendered (each with
its kernel module and that file's sha256) and, per GPU, the config chosen for each shape bucket.
The table is data that travelled: it is checked on load and a tampered or truncated one is refused.

Fallback chain, each step logged once: exact GPU -> same architecture family -> the heuristic default
config -> (no GPU) the caller's CPU path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

from ..identity import DeviceFingerprint
from ..spec.shapes import shape_bucket

log = logging.getLogger("slagen.runtime")
TABLE_FORMAT = 1
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_KEY_RE = re.compile(r"^([a-z][a-z0-9]*)/bh([1-9][0-9]*)_t([1-9][0-9]*)$")
_LOGGED: set[tuple[str, ...]] = set()


class PackageError(RuntimeError):
    """A generated package's table or kernel files are damaged; rebuild it with `slagen build`."""


def log_once(*key: str, message: str) -> None:
    if key not in _LOGGED:
        _LOGGED.add(key)
        log.warning(message)


def table_checksum(body: dict[str, Any]) -> str:
    """The sha256 of a table without its checksum: written by `codegen.package`, checked here."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bucket_distance(a: str, b: str) -> float:
    """Distance between two keys `<dtype>/bh<N>_t<M>`: another dtype is far, then T weighs above B*H."""
    (adt, abh, at), (bdt, bbh, bt) = (_parse_key(a), _parse_key(b))
    return 100.0 * (adt != bdt) + 2.0 * abs(math.log2(at) - math.log2(bt)) + abs(math.log2(abh) - math.log2(bbh))


def _parse_key(key: str) -> tuple[str, int, int]:
    match = _KEY_RE.match(key) if isinstance(key, str) else None
    if match is None:
        raise PackageError(f"tables.json: bad bucket key {key!r} (expected <dtype>/bh<N>_t<M>)")
    return match.group(1), int(match.group(2)), int(match.group(3))


def bucket_key(dtype: str, batch_heads: int, seqlen: int) -> str:
    """The table key of a call: dtype name (bfloat16, float16, float32) and shape bucket."""
    return f"{dtype}/{shape_bucket(batch_heads, seqlen)}"


def _expect(condition: bool, where: str, what: str) -> None:
    if not condition:
        raise PackageError(f"tables.json: {where}: {what}; the table is damaged, rebuild with `slagen build`")


class DispatchTable:
    """The checked contents of a package's tables.json, and the per-call config choice."""

    def __init__(self, data: dict[str, Any], root: Path) -> None:
        self.root = root
        self.data = data
        self._check()

    @classmethod
    def load(cls, path: Path) -> "DispatchTable":
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise PackageError(f"{path}: missing; rebuild the package with `slagen build`") from None
        except json.JSONDecodeError as err:
            raise PackageError(f"{path}: not valid JSON at line {err.lineno} (truncated or edited?); "
                               "rebuild with `slagen build`") from None
        return cls(data, path.parent)

    def _check(self) -> None:
        data = self.data
        _expect(isinstance(data, dict), "top level", "expected an object")
        _expect(data.get("format") == TABLE_FORMAT, "format", f"expected {TABLE_FORMAT}, got {data.get('format')!r}")
        body = {k: v for k, v in data.items() if k != "checksum"}
        _expect(data.get("checksum") == table_checksum(body), "checksum", "does not match the contents")
        variants = data.get("variants")
        _expect(isinstance(variants, dict), "variants", "expected an object")
        for name, variant in variants.items():
            configs = variant.get("configs")
            _expect(isinstance(configs, dict), f"variants.{name}.configs", "expected an object")
            for config_id, entry in configs.items():
                where = f"variants.{name}.configs.{config_id}"
                config = entry.get("config")
                _expect(isinstance(config, dict) and all(
                    (type(v) is int) or (type(v) is str and v.isidentifier()) for v in config.values()),
                    where, "config values must be integers or identifiers")
                module = self.root / str(entry.get("module", ""))
                _expect(module.is_file() and module.resolve().is_relative_to(self.root.resolve()),
                        where, f"kernel module {entry.get('module')!r} is missing")
                _expect(file_sha256(module) == entry.get("sha256"), where,
                        f"kernel module {entry.get('module')!r} does not match its recorded sha256")
            for op, op_table in variant.get("ops", {}).items():
                where = f"variants.{name}.ops.{op}"
                _expect(op_table.get("default") in configs, where, "default names no config")
                for gpu, gpu_table in op_table.get("devices", {}).items():
                    for bucket, config_id in gpu_table.get("buckets", {}).items():
                        _parse_key(bucket)
                        _expect(config_id in configs, f"{where}.devices.{gpu}", f"bucket {bucket} names no config")
                    for bucket, key in gpu_table.get("keys", {}).items():
                        _expect(bucket in gpu_table["buckets"] and isinstance(key, str) and _HASH_RE.match(key),
                                f"{where}.devices.{gpu}.keys", f"bucket {bucket}: expected a tuning key's hash")

    def variants(self) -> list[str]:
        return list(self.data["variants"])

    def config_entry(self, variant: str, config_id: str) -> dict[str, Any]:
        return self.data["variants"][variant]["configs"][config_id]

    def choose(self, variant: str, op: str, gpu: DeviceFingerprint | None, dtype: str, batch_heads: int,
               seqlen: int) -> str:
        """The config id for one call: by the GPU's name, else its family (the loose part of the device's
        fingerprint: a package cannot know the driver it will meet). Logs (once) each fallback step it takes."""
        op_table = self.data["variants"][variant]["ops"][op]
        devices: dict[str, Any] = op_table.get("devices", {})
        bucket = bucket_key(dtype, batch_heads, seqlen)
        if gpu is not None:
            candidates = devices.get(gpu.name)
            if candidates is None:
                family = [d for d in sorted(devices) if devices[d].get("family") == gpu.family]
                if family:
                    log_once(variant, op, gpu.name, "family", message=(
                        f"slagen: no tuned table for {gpu.name!r}; using {family[0]!r} of the same "
                        f"architecture ({gpu.family}) for {variant}.{op}"))
                    candidates = devices[family[0]]
            if candidates and candidates.get("buckets"):
                buckets = candidates["buckets"]
                if bucket in buckets:
                    return buckets[bucket]
                nearest = min(sorted(buckets), key=lambda b: bucket_distance(b, bucket))
                return buckets[nearest]
            log_once(variant, op, gpu.name, "default", message=(
                f"slagen: no tuned table for {gpu.name!r} ({gpu.family}); {variant}.{op} uses the heuristic "
                "default config"))
        return op_table["default"]
