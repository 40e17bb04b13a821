"""Carried state: two calls == one call; varlen (cu_seqlens) == a loop over the sequences."""

from __future__ import annotations

import pytest
import torch

from refcases import ALL, BUILTINS, assert_close, flat
from slagen.reference import attention, make_inputs

PER_TOKEN = ("q", "k", "v", "g", "beta", "read_logits", "write_logits", "zs_logits", "zs_gate1", "zs_gateh")


def _time_slice(inputs, t0, t1, row=None):
    """Inputs restricted to positions t0:t1 (and to one batch row when given)."""
    out = {}
    for name, t in inputs.items():
        if name in PER_TOKEN:
            t = t[:, t0:t1] if row is None else t[row:row + 1, t0:t1]
        out[name] = t
    return out


@pytest.mark.parametrize("method", ["naive", "recurrent", "chunked"])
@pytest.mark.parametrize("name", sorted(ALL))
def test_split_in_two_calls_equals_one(name, method):
    spec = ALL[name]
    x = make_inputs(spec, 2, 50, 3, seed=11, with_initial_state=True)
    whole_o, whole_s = attention(spec, **x, output_final_state=True, method=method, chunk_size=16)
    first = _time_slice(x, 0, 21)
    o1, s1 = attention(spec, **first, output_final_state=True, method=method, chunk_size=16)
    second = dict(_time_slice(x, 21, 50), initial_state=s1)
    o2, s2 = attention(spec, **second, output_final_state=True, method=method, chunk_size=16)
    assert_close(torch.cat([o1, o2], dim=1), whole_o)
    assert_close(flat(s2), flat(whole_s))


@pytest.mark.parametrize("with_state", [False, True], ids=["fresh", "carried"])
@pytest.mark.parametrize("method", ["naive", "recurrent", "chunked"])
@pytest.mark.parametrize("name", sorted(ALL))
def test_varlen_equals_loop(name, method, with_state):
    spec = ALL[name]
    seqlens = [17, 0, 30, 1, 9]
    x = make_inputs(spec, 1, None, 3, seed=12, seqlens=seqlens, with_initial_state=with_state)
    o, s = attention(spec, **x, output_final_state=True, method=method, chunk_size=16)
    bounds = x["cu_seqlens"].tolist()
    state = x.get("initial_state")
    for i, (t0, t1) in enumerate(zip(bounds[:-1], bounds[1:])):
        one = {n: t for n, t in _time_slice(x, t0, t1).items() if n not in ("cu_seqlens", "initial_state")}
        if state is not None:
            one["initial_state"] = tuple(p[i:i + 1] for p in state) if isinstance(state, tuple) else state[i:i + 1]
        o_i, s_i = attention(spec, **one, output_final_state=True, method=method, chunk_size=16)
        assert_close(o[:, t0:t1], o_i)
        row = tuple(p[i:i + 1] for p in s) if isinstance(s, tuple) else s[i:i + 1]
        assert_close(flat(row), flat(s_i))


@pytest.mark.parametrize("name", ["zeros", "zeros_mamba2", "zeros_gla"])
def test_zeros_all_zero_state_means_empty(name):
    # n = 0 marks an empty ZeroS state, so zeros (the natural "no history" tensor) behave like None
    spec = BUILTINS[name]
    x = make_inputs(spec, 2, 20, 3, seed=13)
    fresh_o, fresh_s = attention(spec, **x, output_final_state=True)
    zero_state = (torch.zeros(2, 3, 3, 16, 24, dtype=torch.float64), torch.zeros(2, 3, 4, dtype=torch.float64))
    for method in ("naive", "recurrent", "chunked"):
        o, s = attention(spec, **x, initial_state=zero_state, output_final_state=True, method=method)
        assert_close(o, fresh_o)
        assert_close(flat(s), flat(fresh_s))


def test_final_state_is_none_unless_asked():
    spec = BUILTINS["gla"]
    x = make_inputs(spec, 1, 10, 2)
    assert attention(spec, **x)[1] is None
    assert attention(spec, **x, output_final_state=True)[1].shape == (1, 2, 16, 24)
