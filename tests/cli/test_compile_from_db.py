"""`slagen.compile` takes the tuning DB's best configs for this device when it has them."""

import dataclasses

import pytest

import slagen
from slagen.codegen import lower
from slagen.db import KernelRef, TuningStore
from slagen.spec import BUILTIN_SPECS
from slagen.tuning.fingerprint import detect

SPEC = dataclasses.replace(BUILTIN_SPECS["retnet"], name="db_retnet", head_dim_k=16, head_dim_v=16)


def _record(store, op, bucket, config, ms):
    from slagen.codegen.render import template_hash

    plan = lower(SPEC)[op]
    store.record_trial(KernelRef(SPEC.spec_hash, plan.name, template_hash(plan.template)),
                       spec=SPEC.to_dict(), device=detect(), shape_bucket=bucket, dtype="float32",
                       config=plan.validate_config(config, partial=True).as_dict(), status="ok", median_ms=ms,
                       n_repeats=3)


@pytest.mark.interpreter
def test_compile_uses_the_db_nearest_bucket_and_never_creates_one(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'tuning.db'}"
    with TuningStore(url) as store:
        _record(store, "forward", "bh4_t64", {"chunk_size": 16}, 1.0)
        _record(store, "forward", "bh128_t4096", {"chunk_size": 32}, 2.0)
    op = slagen.compile(SPEC, shape="1x40x4", dtype="float32", db_url=url)
    assert op.configs["forward"]["chunk_size"] == 16
    op = slagen.compile(SPEC, shape="8x4096x16", dtype="float32", db_url=url)
    assert op.configs["forward"]["chunk_size"] == 32
    default = lower(SPEC)["recurrent"].default_config().as_dict()
    assert op.configs["recurrent"] == default  # nothing tuned for it: the heuristic default
    assert slagen.compile(SPEC, {"chunk_size": 64}, db_url=url).configs["forward"]["chunk_size"] == 64
    missing = tmp_path / "absent.db"
    monkeypatch.setenv("SLAGEN_DB", f"sqlite:///{missing}")
    slagen.compile(SPEC)
    assert not missing.exists()
