"""One device identity and one tuning key, each with a stable hash that every field changes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from slagen.identity import DeviceFingerprint, TuningKey

H100 = DeviceFingerprint("NVIDIA H100 80GB HBM3", "9.0", 132, 85_899_345_920, "550.54.15", "12.4", "3.2.0", "2.5.1",
                         smem_per_block=227 * 1024, regs_per_sm=65536)
KEY = TuningKey(spec_hash="1111aaaa2222bbbb", plan_name="linear.forward", template_hash="t0000000000000000001",
                device=H100, dtype="bfloat16", shape_bucket="bh32_t4096")


def _changed(value):
    return value + 1 if isinstance(value, int) else value + "x"


@pytest.mark.parametrize("field", DeviceFingerprint.FIELDS)
def test_each_device_field_changes_the_fingerprint_and_the_key(field):
    device = dataclasses.replace(H100, **{field: _changed(getattr(H100, field))})
    assert device != H100 and device.stable_hash() != H100.stable_hash()
    assert dataclasses.replace(KEY, device=device).stable_hash() != KEY.stable_hash()


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(TuningKey) if f.name != "device"])
def test_each_key_field_changes_the_hash(field):
    assert dataclasses.replace(KEY, **{field: _changed(getattr(KEY, field))}).stable_hash() != KEY.stable_hash()


def test_fields_are_hashed_by_name_so_swapped_values_differ():
    swapped = dataclasses.replace(KEY, dtype=KEY.shape_bucket, shape_bucket=KEY.dtype)
    assert swapped.stable_hash() != KEY.stable_hash()


def test_pruning_limits_are_not_identity():
    """The tuner's limits are read from the device, not stored: they change neither equality nor hash."""
    bare = dataclasses.replace(H100, smem_per_block=None, regs_per_sm=None)
    assert bare == H100 and bare.stable_hash() == H100.stable_hash() and hash(bare) == hash(H100)
    assert DeviceFingerprint.from_dict(H100.to_dict()) == H100 and set(H100.to_dict()) == set(DeviceFingerprint.FIELDS)


def test_the_hash_is_stable_across_processes():
    """No per-process salt (Python's hash()): a key hashed today names the same study and best row tomorrow."""
    code = ("from slagen.identity import DeviceFingerprint, TuningKey; "
            f"print(TuningKey('1111aaaa2222bbbb', 'linear.forward', 't0000000000000000001', DeviceFingerprint("
            f"*{tuple(H100.to_dict().values())!r}), 'bfloat16', 'bh32_t4096').stable_hash())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == KEY.stable_hash() and len(out) == 64


def test_device_views():
    assert (H100.family, H100.arch, H100.capability, H100.gpu_slug) == ("sm90", "hopper", (9, 0), "h100-80gb-hbm3")
    assert H100.device_key == "h100-80gb-hbm3_sm90_132sm_cuda12.4_drv550.54.15"
    cpu = DeviceFingerprint("cpu-interpreter", "", 2, 0, "", "", "3.2.0", "2.5.1")
    assert cpu.is_interpreter and cpu.family == "unknown" and cpu.device_key == "cpu-interpreter"
