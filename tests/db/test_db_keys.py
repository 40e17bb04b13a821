"""The cache key is built in one place from one explicit tuple; every field changes it."""

from __future__ import annotations

import dataclasses

import pytest
from db_testdata import H100

from slagen.db import CACHE_KEY_FIELDS, DeviceFingerprint, RecordError, cache_key

KEY_PARTS = dict(
    spec_hash="1111aaaa2222bbbb", template_hash="t0000000000000000001", slagen_version="0.1.0",
    device_key=H100.key, triton_version="3.2.0", dtype="bfloat16", shape_bucket="bh32_t4096",
)


def test_cache_key_is_deterministic_and_positional():
    assert tuple(KEY_PARTS) == CACHE_KEY_FIELDS
    assert cache_key(**KEY_PARTS) == cache_key(*KEY_PARTS.values())
    assert len(cache_key(**KEY_PARTS)) == 32


@pytest.mark.parametrize("field", CACHE_KEY_FIELDS)
def test_each_field_changes_the_cache_key(field):
    changed = dict(KEY_PARTS, **{field: KEY_PARTS[field] + "x"})
    assert cache_key(**changed) != cache_key(**KEY_PARTS)


def test_swapping_two_fields_changes_the_key():
    swapped = dict(KEY_PARTS, dtype="bh32_t4096", shape_bucket="bfloat16")
    assert cache_key(**swapped) != cache_key(**KEY_PARTS)


@pytest.mark.parametrize("bad", ["", None, 3])
def test_cache_key_refuses_empty_or_non_text_fields(bad):
    with pytest.raises(RecordError, match="dtype: expected a non-empty string"):
        cache_key(**dict(KEY_PARTS, dtype=bad))


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(DeviceFingerprint)])
def test_each_device_fingerprint_field_changes_the_device_key(field):
    value = getattr(H100, field)
    changed = dataclasses.replace(H100, **{field: value + 1 if isinstance(value, int) else value + "x"})
    assert changed.key != H100.key
