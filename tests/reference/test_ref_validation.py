"""Every refused input raises ValueError naming the argument (and what was expected)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from refcases import BUILTINS
from slagen.reference import attention, make_inputs, validate_inputs


def _inputs(name, **kw):
    spec = BUILTINS[name]
    return spec, make_inputs(spec, 2, 10, 3, **kw)


def _refused(spec, inputs, *fragments, **extra):
    with pytest.raises(ValueError) as info:
        attention(spec, **inputs, **extra)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def _drop(x, name):
    return {n: t for n, t in x.items() if n != name}


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_missing_required_input(name):
    spec, x = _inputs(name)
    for missing in spec.required_inputs():
        _refused(spec, _drop(x, missing), f"{missing}: required")


@pytest.mark.parametrize("arg, value_shape, name", [
    ("g", (2, 10, 3), "linear"), ("g_gamma", (3,), "mamba2"), ("beta", (2, 10, 3), "mamba2"),
    ("read_logits", (2, 10, 3), "gla"), ("write_logits", (2, 10, 3), "sla_gla"),
    ("zs_logits", (2, 10, 3), "linear"), ("zs_gate1", (2, 10, 3), "gdn"), ("zs_gateh", (2, 10, 3), "retnet"),
    ("norm_weight", (24,), "mamba2"), ("write_logits", (2, 10, 3), "zeros"),
])
def test_unexpected_input(arg, value_shape, name):
    spec, x = _inputs(name)
    x[arg] = -torch.rand(value_shape, dtype=torch.float64)
    _refused(spec, x, f"{arg}: not used by spec {spec.name!r}")


@pytest.mark.parametrize("arg, name, bad_shape, want", [
    ("q", "linear", (2, 10, 3, 17), "[B, T, H, 16]"),
    ("k", "linear", (2, 10, 3, 8), "[2, 10, 3, 16]"),
    ("v", "linear", (2, 9, 3, 24), "[2, 10, 3, 24]"),
    ("g", "mamba2", (2, 10), "[2, 10, 3] ([B, T, H])"),
    ("g", "gla", (2, 10, 3), "[2, 10, 3, 16] ([B, T, H, K])"),
    ("g_gamma", "retnet", (4,), "[3] ([H])"),
    ("beta", "gdn", (2, 10, 3, 1), "[2, 10, 3]"),
    ("read_logits", "sla_gla", (2, 10, 4), "[2, 10, 3]"),
    ("zs_logits", "zeros", (1, 10, 3), "[2, 10, 3]"),
    ("zs_gate1", "zeros", (2, 10), "[2, 10, 3]"),
    ("zs_gateh", "zeros", (2, 11, 3), "[2, 10, 3]"),
    ("norm_weight", "sla_linear", (16,), "[24] ([V])"),
])
def test_wrong_shape(arg, name, bad_shape, want):
    spec, x = _inputs(name)
    x[arg] = -torch.rand(bad_shape, dtype=torch.float64) * 0.1
    msg = _refused(spec, x, f"{arg}: expected", want)
    assert str(list(bad_shape)) in msg


def test_wrong_rank_and_type():
    spec, x = _inputs("linear")
    _refused(spec, dict(x, q=x["q"][0]), "q: expected 4 dims")
    _refused(spec, dict(x, v=x["v"].numpy()), "v: expected a torch.Tensor")


@pytest.mark.parametrize("arg, dtype", [("k", torch.float32), ("v", torch.float16), ("q", torch.int64),
                                        ("g", torch.int32), ("beta", torch.bool)])
def test_wrong_dtype(arg, dtype):
    spec, x = _inputs("gdn")
    x[arg] = x[arg].to(dtype)
    _refused(spec, x, f"{arg}: expected dtype", str(dtype))


@pytest.mark.parametrize("arg", ["k", "g", "beta", "cu_seqlens"])
def test_wrong_device(arg):
    spec = BUILTINS["gdn"]
    x = make_inputs(spec, 1, None, 3, seqlens=[4, 6])
    x[arg] = x[arg].to("meta")
    _refused(spec, x, f"{arg}: expected a tensor on cpu", "meta")


def test_cu_seqlens_malformed():
    spec = BUILTINS["mamba2"]
    x = make_inputs(spec, 1, None, 3, seqlens=[4, 6])
    cases = {
        "start at 0": torch.tensor([1, 4, 10]),
        "end at T=10": torch.tensor([0, 4, 9]),
        "non-decreasing": torch.tensor([0, 6, 4, 10]),
        "[N + 1]": torch.tensor([0]),
        "dtype": torch.tensor([0, 4, 10], dtype=torch.int32),
    }
    for fragment, bad in cases.items():
        _refused(spec, dict(x, cu_seqlens=bad), "cu_seqlens:", fragment)
    _refused(spec, dict(x, cu_seqlens=torch.tensor([[0, 4, 10]])), "cu_seqlens:", "[1, 3]")


def test_cu_seqlens_needs_batch_one():
    spec, x = _inputs("mamba2")
    _refused(spec, dict(x, cu_seqlens=torch.tensor([0, 4, 10])), "cu_seqlens: expected batch size 1", "B=2")


def test_initial_state_wrong_shape():
    spec, x = _inputs("gla", with_initial_state=True)
    _refused(spec, dict(x, initial_state=x["initial_state"][:, :, :8]), "initial_state: expected shape",
             "[2, 3, 16, 24]", "[2, 3, 8, 24]")
    _refused(spec, dict(x, initial_state=x["initial_state"].half()), "initial_state: expected dtype")
    varlen = make_inputs(spec, 1, None, 3, seqlens=[4, 6], with_initial_state=True)
    _refused(spec, dict(varlen, initial_state=varlen["initial_state"][:1]), "initial_state:", "[2, 3, 16, 24]")


def test_zeros_initial_state_wrong_shape():
    spec, x = _inputs("zeros", with_initial_state=True)
    kv, stats = x["initial_state"]
    _refused(spec, dict(x, initial_state=kv), "initial_state: expected a tuple")
    _refused(spec, dict(x, initial_state=(kv[:, :, :2], stats)), "initial_state[0] (kv)", "[2, 3, 3, 16, 24]")
    _refused(spec, dict(x, initial_state=(kv, stats[..., :3])), "initial_state[1] (stats)", "[2, 3, 4]")


def test_values_out_of_range():
    spec, x = _inputs("gdn")
    _refused(spec, dict(x, g=-x["g"]), "g: expected log-space decays <= 0")
    _refused(spec, dict(x, beta=x["beta"] + 1), "beta: expected values in [0, 1]")
    spec_z, xz = _inputs("zeros")
    _refused(spec_z, dict(xz, zs_logits=xz["zs_logits"] / 0), "zs_logits: expected finite")


def test_other_arguments():
    spec, x = _inputs("linear")
    _refused(spec, x, "method: expected one of", method="fast")
    _refused(spec, x, "chunk_size: expected", chunk_size=0)
    _refused(spec, x, "scale: expected", scale=float("nan"))
    _refused(spec, x, "output_final_state: expected True or False", output_final_state=1)
    no_final = dataclasses.replace(spec, final_state=False, initial_state=False, varlen=False)
    _refused(no_final, x, "output_final_state: spec", output_final_state=True)
    _refused(no_final, dict(x, initial_state=torch.zeros(2, 3, 16, 24)), "initial_state: not used")
    _refused(no_final, dict(x, cu_seqlens=torch.tensor([0, 10])), "cu_seqlens: not used")


def test_validate_inputs_reports_the_call_shape():
    spec = BUILTINS["zeros"]
    x = make_inputs(spec, 1, None, 3, seqlens=[4, 0, 6])
    shape = validate_inputs(spec, **x)
    assert (shape.batch, shape.seqlen, shape.heads, shape.head_dim_k, shape.head_dim_v) == (1, 10, 3, 16, 24)
    assert shape.seq_bounds == ((0, 4), (4, 4), (4, 10)) and shape.num_states == 3
