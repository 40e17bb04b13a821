"""naive == recurrent == chunked, for every spec, several chunk sizes and T not a multiple of them."""

from __future__ import annotations

import pytest
import torch

from refcases import ALL, BUILTINS, assert_close, flat
from slagen.reference import attention, make_inputs

CHUNK_SIZES = (16, 32, 64)


def _all_methods(spec, inputs):
    ref_o, ref_s = attention(spec, **inputs, output_final_state=True, method="naive")
    runs = [("recurrent", None)] + [("chunked", c) for c in CHUNK_SIZES]
    for method, chunk in runs:
        o, s = attention(spec, **inputs, output_final_state=True, method=method, chunk_size=chunk)
        assert_close(o, ref_o)
        assert_close(flat(s), flat(ref_s))
    return ref_o


@pytest.mark.parametrize("with_state", [False, True], ids=["fresh", "carried"])
@pytest.mark.parametrize("name", sorted(ALL))
def test_methods_agree(name, with_state):
    spec = ALL[name]
    o = _all_methods(spec, make_inputs(spec, 2, 63, 3, seed=1, with_initial_state=with_state))
    assert torch.isfinite(o).all()


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_methods_agree_long(name):
    spec = BUILTINS[name]
    _all_methods(spec, make_inputs(spec, 1, 100, 2, seed=2, with_initial_state=True))


@pytest.mark.parametrize("chunk", [1, 5, 37, 128])
def test_odd_chunk_sizes(chunk):
    for name in ("gla", "gdn", "zeros_gla", "zeros_mamba2"):
        spec = BUILTINS[name]
        x = make_inputs(spec, 1, 37, 2, seed=3, with_initial_state=True)
        ref_o, ref_s = attention(spec, **x, output_final_state=True)
        o, s = attention(spec, **x, output_final_state=True, method="chunked", chunk_size=chunk)
        assert_close(o, ref_o)
        assert_close(flat(s), flat(ref_s))


@pytest.mark.parametrize("name", ["mamba2", "gla", "gdn", "zeros_gla", "zeros_mamba2"])
def test_strong_decay_stays_finite(name):
    # per-step decays down to e^-20: chunk-relative exponents must stay non-positive (no inf * 0)
    spec = BUILTINS[name]
    x = make_inputs(spec, 1, 100, 2, seed=4)
    x["g"] = x["g"] * 60
    ref_o, ref_s = attention(spec, **x, output_final_state=True)
    o, s = attention(spec, **x, output_final_state=True, method="chunked", chunk_size=64)
    assert torch.isfinite(ref_o).all() and torch.isfinite(o).all()
    assert_close(o, ref_o)
    assert_close(flat(s), flat(ref_s))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["sla_gla", "gdn", "zeros_mamba2"])
def test_low_precision_dtypes(name, dtype):
    spec = BUILTINS[name]
    x = make_inputs(spec, 1, 40, 2, seed=5, dtype=dtype, with_initial_state=True)
    x64 = {n: (tuple(p.double() for p in t) if isinstance(t, tuple) else t.double() if t.is_floating_point() else t)
           for n, t in x.items()}
    ref_o, _ = attention(spec, **x64)
    for method in ("naive", "recurrent", "chunked"):
        o, s = attention(spec, **x, output_final_state=True, method=method, chunk_size=16)
        assert o.dtype == dtype
        assert all(t.dtype == torch.float32 for t in (s if isinstance(s, tuple) else (s,)))
        tol = 1e-4 if dtype == torch.float32 else 5e-2
        torch.testing.assert_close(o.double(), ref_o, atol=tol * ref_o.abs().max().item(), rtol=tol)
