"""Test data for the tuning-database tests: devices, kernels, specs and a trial factory.

A plain module (not conftest) so the concurrent-writer script can import it too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from slagen.db import DeviceFingerprint, KernelRef, TrialRecord, TuningStore
from slagen.db.records import spec_content_hash

POSTGRES_ENV = "SLAGEN_TEST_POSTGRES_URL"

H100 = DeviceFingerprint("NVIDIA H100 80GB HBM3", "9.0", 132, 85_899_345_920, "550.54.15", "12.4", "3.2.0", "2.5.1")
A100 = DeviceFingerprint("NVIDIA A100-SXM4-80GB", "8.0", 108, 85_899_345_920, "550.54.15", "12.4", "3.2.0", "2.5.1")
LINEAR_SPEC = {"name": "linear", "decay": "none", "head_dim_k": 128, "head_dim_v": 128}
GLA_SPEC = {"name": "gla", "decay": "vector", "head_dim_k": 128, "head_dim_v": 128}
LINEAR_FWD = KernelRef(spec_content_hash(LINEAR_SPEC), "linear.forward", "t0000000000000000001")
GLA_FWD = KernelRef(spec_content_hash(GLA_SPEC), "gla.forward", "t0000000000000000002")
SPECS = {LINEAR_FWD.spec_hash: LINEAR_SPEC, GLA_FWD.spec_hash: GLA_SPEC}
BASE_TIME = datetime(2026, 1, 2, 3, 4, 5)


class TrialFactory:
    """Records trials with deterministic defaults; each call gets a later timestamp."""

    def __init__(self) -> None:
        self.count = 0

    def kwargs(self, **overrides: Any) -> dict[str, Any]:
        self.count += 1
        kernel = overrides.pop("kernel", LINEAR_FWD)
        values: dict[str, Any] = dict(
            kernel=kernel, spec=SPECS[kernel.spec_hash], device=H100, shape_bucket="bh32_t4096",
            dtype="bfloat16", config={"BT": 64, "BK": 64, "num_warps": 4}, status="ok",
            median_ms=1.0 + self.count / 100, p20_ms=None, p80_ms=None, n_repeats=25, max_error=1e-3,
            sampler="tpe", seed=0, host="host-a", slagen_version="0.1.0",
            created_at=BASE_TIME + timedelta(seconds=self.count),
        )
        values.update(overrides)
        return values

    def record(self, store: TuningStore, **overrides: Any) -> TrialRecord:
        return store.record_trial(**self.kwargs(**overrides))

    def make(self, **overrides: Any) -> TrialRecord:
        """A trial record, not stored."""
        kwargs = self.kwargs(**overrides)
        kwargs.pop("spec")
        return TrialRecord(**kwargs)

    def fill(self, store: TuningStore, n: int, *, seed: int = 0, **overrides: Any) -> list[TrialRecord]:
        """`n` varied trials added in one transaction: two kernels, two buckets, both devices, some failures."""
        out = []
        for i in range(n):
            j = i + seed
            status = ("ok", "ok", "ok", "compile_error", "mismatch", "timeout", "out_of_resources")[j % 7]
            out.append(self.make(
                kernel=(LINEAR_FWD, GLA_FWD)[j % 2], device=(H100, A100)[(j // 2) % 2],
                shape_bucket=("bh32_t4096", "bh8_t1024")[(j // 4) % 2], status=status,
                config={"BT": (16, 32, 64)[j % 3], "num_warps": (2, 4, 8)[(j // 3) % 3], "i": j},
                median_ms=None if status in ("compile_error", "out_of_resources") else 0.5 + (j * 37 % 11) / 10,
                **overrides,
            ))
        store.add_records(out, SPECS, source="test")
        return out
