"""Content hashes: the cache key of a tuned kernel, and the stable id of a trial."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .errors import RecordError

# The fields of the cache key, in order. Everything that changes generated code or its timing is here.
CACHE_KEY_FIELDS = (
    "spec_hash", "template_hash", "slagen_version", "device_key", "triton_version", "dtype", "shape_bucket",
)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, no NaN: the one text a value hashes as."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def content_hash(value: Any, *, length: int = 64) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def cache_key(
    spec_hash: str,
    template_hash: str,
    slagen_version: str,
    device_key: str,
    triton_version: str,
    dtype: str,
    shape_bucket: str,
) -> str:
    """The key a tuned config is cached under: one explicit tuple, hashed in one place.

    Fields are hashed by name, so two fields swapping values is a different key too.
    """
    values = (spec_hash, template_hash, slagen_version, device_key, triton_version, dtype, shape_bucket)
    for name, value in zip(CACHE_KEY_FIELDS, values):
        if not isinstance(value, str) or not value:
            raise RecordError(name, f"expected a non-empty string, got {value!r}")
    return content_hash(dict(zip(CACHE_KEY_FIELDS, values)), length=32)
