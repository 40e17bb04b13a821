"""make_inputs: exactly the arguments a spec needs, valid, realistic, deterministic."""

from __future__ import annotations

import math

import pytest
import torch

from refcases import ALL
from slagen.reference import attention, make_inputs, validate_inputs
from slagen.reference.inputs import ZS_PREFIX_LEN


@pytest.mark.parametrize("name", sorted(ALL))
def test_keys_are_exactly_what_the_spec_needs(name):
    spec = ALL[name]
    x = make_inputs(spec, 1, None, 3, seqlens=[5, 7], with_initial_state=True)
    expected = {"q", "k", "v", *spec.required_inputs(), "initial_state", "cu_seqlens"}
    expected |= {"norm_weight"} if spec.output_norm == "rms" else set()
    assert set(x) == expected
    validate_inputs(spec, **x)
    for t in x.values():
        for part in (t if isinstance(t, tuple) else (t,)):
            assert torch.count_nonzero(part) > 0, "never all zeros"
    assert x["cu_seqlens"].tolist() == [0, 5, 12] and x["q"].shape[1] == 12


@pytest.mark.parametrize("name", sorted(ALL))
def test_ranges(name):
    spec = ALL[name]
    x = make_inputs(spec, 2, 50, 4)
    if "g" in x:
        assert (x["g"] < 0).all()
        total = x["g"].sum(1)  # decay over 50 steps: visible but not vanishing
        assert (total < -0.5).all() and (total > -30).all()
    if "g_gamma" in x:
        want = [math.log(1 - 2 ** (-5 - h)) for h in range(4)]
        torch.testing.assert_close(x["g_gamma"], torch.tensor(want, dtype=torch.float64))
    for gate in ("beta", "zs_gate1", "zs_gateh"):
        if gate in x:
            assert ((x[gate] > 0) & (x[gate] < 1)).all()


def test_deterministic_and_seeded():
    spec = ALL["sla_gdn"]
    a, b, c = (make_inputs(spec, 2, 9, 3, seed=s) for s in (5, 5, 6))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["q"], c["q"])


def test_dtypes_devices_and_grad():
    spec = ALL["zeros_mamba2"]
    x = make_inputs(spec, 1, 9, 2, dtype=torch.bfloat16, with_initial_state=True, requires_grad=True)
    assert x["q"].dtype == torch.bfloat16 and x["g"].dtype == torch.float32
    assert all(p.dtype == torch.float32 and p.requires_grad and p.is_leaf for p in x["initial_state"])
    assert x["zs_logits"].requires_grad and x["zs_logits"].is_leaf


def test_zeros_initial_state_is_a_real_carried_state():
    spec = ALL["zeros"]
    kv, stats = make_inputs(spec, 2, 9, 3, with_initial_state=True)["initial_state"]
    E, P, m, n = stats.unbind(-1)
    assert (n == ZS_PREFIX_LEN).all()
    assert (E >= 1).all() and (E <= ZS_PREFIX_LEN).all()  # e^{s - max} summed: the max term is 1


def test_seqlens_need_batch_one():
    spec = ALL["linear"]
    with pytest.raises(ValueError, match="batch: expected 1"):
        make_inputs(spec, 2, None, 3, seqlens=[3, 4])
    with pytest.raises(ValueError, match="seqlen: expected None or sum"):
        make_inputs(spec, 1, 8, 3, seqlens=[3, 4])
    o, _ = attention(spec, **make_inputs(spec, 1, 7, 3, seqlens=[3, 4]))
    assert o.shape == (1, 7, 3, 24)
