"""The gated backward does no arithmetic on the host: between its launches it only allocates (issue 17
item 5). Kernels are stood in for (nothing runs), the host's aten ops are recorded with a TorchDispatchMode;
the gradients themselves are checked against the reference in test_gated_backward.py and
test_gated_low_precision.py."""

from __future__ import annotations

import json

import pytest
import torch

from gated_bwd_helpers import compiled_bwd
from gated_helpers import inputs
from host_ops import HostOps, NoLaunch

pytestmark = pytest.mark.interpreter
KERNELS = ("chunk_cumsum", "bwd_states", "bwd_output_dq", "bwd_dh", "bwd_dqk", "bwd_dv", "bwd_dkv",
           "chunk_rev_cumsum", "bwd_gate_finish")


@pytest.mark.parametrize("name, launches", [
    # retnet: the base's 4 launches; its SLA forms launch as many (issue 17): the epilogue's backward makes dq
    # (bwd_output_dq), one kernel dk and dv (bwd_dkv); only a write gate adds its finishing kernel
    ("retnet", dict(bwd_states=1, bwd_dh=1, bwd_dqk=1, bwd_dv=1)),
    ("sla_retnet_both", dict(bwd_states=1, bwd_output_dq=1, bwd_dh=1, bwd_dkv=1, bwd_gate_finish=1)),
    ("sla_gla", dict(chunk_cumsum=1, bwd_states=1, bwd_output_dq=1, bwd_dh=1, bwd_dkv=1, chunk_rev_cumsum=1)),
    ("sla_retnet_norm", dict(bwd_states=1, bwd_output_dq=1, bwd_dh=1, bwd_dkv=1)),
    ("sla_mamba2_write", dict(chunk_cumsum=1, bwd_states=1, bwd_dh=1, bwd_dqk=1, bwd_dv=1, chunk_rev_cumsum=1,
                              bwd_gate_finish=1)),
])
def test_backward_does_no_arithmetic_on_the_host(name, launches, monkeypatch):
    """Head-gate Jacobians, the sums of V-block and chunk partials and the casts all run in kernels (fp32 and
    bf16 inputs, fp32 and bf16 gate logits / norm weight)."""
    monkeypatch.setenv("SLAGEN_POISON_OUTPUTS", "0")  # the tests' NaN fill of new outputs is a host op
    fn = compiled_bwd(name, json.dumps(dict(chunk_size=16, block_k=16, block_v=16))).backward_fn
    names = fn.__globals__
    kernels = {n: NoLaunch(names[n]) for n in KERNELS if n in names}
    for n, stand_in in kernels.items():
        monkeypatch.setitem(names, n, stand_in)
    ker, _ = inputs(name, 1, 21, 2, seed=3)
    for dtype in (torch.float32, torch.bfloat16):
        kw = {n: x.to(dtype) if x.is_floating_point() and n != "initial_state" else x for n, x in ker.items()}
        do, dht = torch.randn(1, 21, 2, kw["v"].shape[-1]).to(dtype), torch.randn_like(kw["initial_state"])
        with HostOps() as host:
            grads = fn(**kw, scale=0.5, do=do, dht=dht)
        assert host.ops == [], dtype
        assert all(grads[n].dtype == kw[n].dtype for n in ("read_logits", "write_logits", "norm_weight")
                   if grads.get(n) is not None)
    assert {n: k.count for n, k in kernels.items() if k.count} == {n: 2 * c for n, c in launches.items()}
