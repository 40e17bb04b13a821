"""Causality: outputs at t do not change when any per-token input after t changes."""

from __future__ import annotations

import pytest
import torch

from refcases import ALL, assert_close
from slagen.reference import attention, make_inputs

PER_TOKEN = ("q", "k", "v", "g", "beta", "read_logits", "write_logits", "zs_logits", "zs_gate1", "zs_gateh")


@pytest.mark.parametrize("method", ["naive", "recurrent", "chunked"])
@pytest.mark.parametrize("name", sorted(ALL))
def test_future_inputs_do_not_leak(name, method):
    spec = ALL[name]
    x = make_inputs(spec, 2, 40, 3, seed=41, with_initial_state=True)
    other = make_inputs(spec, 2, 40, 3, seed=42)
    cut = 23  # inside a chunk of 16: the future shares the chunk with the past
    changed = {n: (torch.cat([t[:, :cut], other[n][:, cut:]], dim=1) if n in PER_TOKEN else t) for n, t in x.items()}
    o = attention(spec, **x, method=method, chunk_size=16)[0]
    o_changed = attention(spec, **changed, method=method, chunk_size=16)[0]
    # ZeroS chunks share one reference max, so the past is equal up to rounding, not bit for bit
    assert_close(o_changed[:, :cut], o[:, :cut], tol=1e-12)
    assert not torch.allclose(o_changed[:, cut:], o[:, cut:])
