"""Content hashes: the stable id of a trial, hashed like every key of slagen (`slagen.identity`)."""

from __future__ import annotations

from typing import Any

from ..identity import canonical_json, stable_hash

__all__ = ["canonical_json", "content_hash"]


def content_hash(value: Any, *, length: int = 64) -> str:
    return stable_hash(value, length=length)
