"""`run_tune`, the function behind `slagen tune`."""

from __future__ import annotations

import dataclasses

import pytest

from slagen.spec import SpecError, load_spec, spec_to_toml
from slagen.tuning.commands import run_tune
from slagen.tuning.search import SearchError


def test_user_mistakes_raise_readable_errors(tmp_path):
    url = f"sqlite:///{tmp_path / 't.db'}"
    with pytest.raises(SpecError, match="shapes"):
        run_tune("retnet", "2x4096", url)
    with pytest.raises(SearchError, match="sampler"):
        run_tune("retnet", "1x64x2", url, sampler="annealing")


@pytest.mark.interpreter
def test_run_tune_on_a_toml_spec_under_the_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("SLAGEN_CACHE_DIR", str(tmp_path / "cache"))
    spec = dataclasses.replace(load_spec("retnet"), name="tiny_retnet", head_dim_k=16, head_dim_v=16,
                               dtypes=("float32",))
    path = tmp_path / "tiny.toml"
    path.write_text(spec_to_toml(spec))
    events = []
    report = run_tune(str(path), "1x40x2", f"sqlite:///{tmp_path / 't.db'}", budget_trials=1, listener=events.append)
    assert report.spec_name == "tiny_retnet" and report.device_key == "cpu-interpreter"
    assert report.trials_by_status == {"ok": len(report.searches)}
    trials = [e for e in events if e.kind == "trial"]
    assert [e.done for e in trials] == list(range(1, len(trials) + 1))
    assert all(e.total == len(report.searches) for e in trials)
