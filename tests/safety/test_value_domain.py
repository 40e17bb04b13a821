"""Class 3 of issue 12: inputs outside the domain are refused by the reference always, and by the compiled
ops whenever values are checked (SLAGEN_CHECK_VALUES=1: `slagen check`, every test); never silently wrong."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import slagen
from slagen.reference import attention, make_inputs
from slagen.spec import BUILTIN_SPECS

SMALL = dict(head_dim_k=16, head_dim_v=16)
OUT_OF_DOMAIN = [
    ("mamba2", "g", lambda t: t.abs() + 0.5, "g: expected log-space decays <= 0"),
    ("mamba2", "g", lambda t: torch.full_like(t, float("nan")), "g: expected log-space decays <= 0 .*got NaN"),
    ("retnet", "g_gamma", lambda t: -t, "g_gamma: expected log-space decays"),
    ("gdn", "beta", lambda t: t + 1.5, "beta: expected values in [0, 1]"),
    ("gdn", "beta", lambda t: t - 1.5, "beta: expected values in [0, 1]"),
    ("zeros", "zs_gate1", lambda t: t * 3, "zs_gate1: expected values in [0, 1]"),
    ("sla_linear", "read_logits", lambda t: t / 0, "read_logits: expected finite values"),
]


@pytest.mark.parametrize("name, field, spoil, message", OUT_OF_DOMAIN)
def test_out_of_domain_values_are_refused_by_reference_and_kernels(name, field, spoil, message, monkeypatch):
    spec = dataclasses.replace(BUILTIN_SPECS[name], **SMALL)
    x = make_inputs(spec, 1, 8, 1, seed=2, dtype=torch.float32)
    x[field] = spoil(x[field])
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        attention(spec, **x)
    op = slagen.compile(spec)
    monkeypatch.setenv("SLAGEN_CHECK_VALUES", "1")
    for fn in (op, op.recurrent):
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            fn(**x)


def test_value_checks_are_off_the_fast_path_by_default(monkeypatch):
    """Without SLAGEN_CHECK_VALUES the compiled op reads no values (no sync): the guard lets g > 0 through."""
    from slagen.runtime.guards import check_inputs

    spec = dataclasses.replace(BUILTIN_SPECS["mamba2"], **SMALL)
    x = make_inputs(spec, 1, 8, 1, seed=2, dtype=torch.float32)
    x["g"] = x["g"].abs() + 0.5
    monkeypatch.delenv("SLAGEN_CHECK_VALUES", raising=False)
    check_inputs(spec, **x)
    monkeypatch.setenv("SLAGEN_CHECK_VALUES", "1")
    with pytest.raises(ValueError, match="g: expected log-space decays"):
        check_inputs(spec, **x)


def test_the_test_suite_checks_values():
    import os

    assert os.environ.get("SLAGEN_CHECK_VALUES") == "1"
