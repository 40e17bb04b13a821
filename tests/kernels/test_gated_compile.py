"""torch.compile(fullgraph=True) over a small model with two slagen layers (RetNet, then SLA-GLA): the ops
are torch custom ops (fake shapes + registered autograd), so dynamo traces the model without graph
breaks; forward and backward match eager, with the backward recomputing the chunk states or reading the
ones the forward op returned (states="store"). Also `torch.library.opcheck` on the forward ops.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gated_bwd_helpers import Launches, compiled_bwd
from gated_helpers import inputs, small_spec
from slagen.reference.inputs import retnet_log_gammas

pytestmark = pytest.mark.interpreter
H = 2


class TwoLayers(nn.Module):
    def __init__(self, dim: int, backward: str = "{}") -> None:
        super().__init__()
        self.retnet, self.gla = compiled_bwd("retnet", backward), compiled_bwd("sla_gla", backward)
        K, V = small_spec("retnet").head_dim_k, small_spec("retnet").head_dim_v
        gen = torch.Generator().manual_seed(0)

        def weight(*shape):
            return nn.Parameter(torch.randn(*shape, generator=gen) / shape[0] ** 0.5)

        self.qkv1, self.out1 = weight(dim, H * (2 * K + V)), weight(H * V, dim)
        self.qkv2, self.out2 = weight(dim, H * (2 * K + V)), weight(H * V, dim)
        self.gate2, self.logits2 = weight(dim, H * K), weight(dim, H)
        self.norm2 = nn.Parameter(torch.ones(V))
        self.register_buffer("g_gamma", retnet_log_gammas(H).float())
        self.K, self.V = K, V

    def _qkv(self, x, w):
        B, T, _ = x.shape
        q, k, v = (x @ w).split([H * self.K, H * self.K, H * self.V], dim=-1)
        return (q.reshape(B, T, H, self.K).contiguous(), k.reshape(B, T, H, self.K).contiguous(),
                v.reshape(B, T, H, self.V).contiguous())

    def forward(self, x):
        B, T, _ = x.shape
        o, _ = self.retnet(*self._qkv(x, self.qkv1), g_gamma=self.g_gamma)
        x = x + o.reshape(B, T, -1) @ self.out1
        g = (F.logsigmoid(x @ self.gate2) / 16).reshape(B, T, H, self.K).contiguous()
        o, _ = self.gla(*self._qkv(x, self.qkv2), g=g, read_logits=(x @ self.logits2).contiguous(),
                        norm_weight=self.norm2)
        return x + o.reshape(B, T, -1) @ self.out2


def _run(model, x):
    model.zero_grad()
    x = x.clone().requires_grad_()
    y = model(x)
    y.pow(2).mean().backward()
    return y.detach(), x.grad, {n.removeprefix("_orig_mod."): p.grad.clone() for n, p in model.named_parameters()}



@pytest.mark.parametrize("states", ["recompute", "store"])
def test_compiled_model_matches_eager(monkeypatch, states):
    torch._dynamo.reset()
    model = TwoLayers(dim=24, backward=f'{{"states": "{states}"}}')
    x = torch.randn(2, 19, 24, generator=torch.Generator().manual_seed(1))
    y_e, dx_e, dp_e = _run(model, x)
    counters = []
    for op in (model.retnet, model.gla):
        counters.append(Launches(op.backward_fn.__globals__["bwd_states"]))
        monkeypatch.setitem(op.backward_fn.__globals__, "bwd_states", counters[-1])
    compiled = torch.compile(model, fullgraph=True)
    y_c, dx_c, dp_c = _run(compiled, x)
    assert [c.count for c in counters] == ([0, 0] if states == "store" else [1, 1])
    torch.testing.assert_close(y_c, y_e, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dx_c, dx_e, rtol=1e-4, atol=1e-5)
    for name in dp_e:
        torch.testing.assert_close(dp_c[name], dp_e[name], rtol=1e-4, atol=1e-5, msg=name)


def test_custom_op_names_are_unique_per_config():
    a = compiled_bwd("retnet")
    b = compiled_bwd("retnet", '{"chunk_size": 16}')
    names = {a.custom_ops["forward"].name, a.custom_ops["recurrent"].name, b.custom_ops["forward"].name}
    assert len(names) == 3 and all(n.startswith("retnet_") for n in names)


@pytest.mark.parametrize("states", ["recompute", "store"])
def test_opcheck_forward_op(states):
    op = compiled_bwd("sla_mamba2", f'{{"chunk_size": 16, "states": "{states}"}}').custom_ops["forward"]
    ker, _ = inputs("sla_mamba2", 1, 9, 2, seed=3)
    args = (ker["q"], ker["k"], ker["v"], ker["g"], None, None, ker["read_logits"], None, None, None, None,
            ker["norm_weight"], None, None, [ker["initial_state"]], None, 0.25, True)
    args = tuple(a.requires_grad_() if isinstance(a, torch.Tensor) and a.is_floating_point() else
                 ([s.requires_grad_() for s in a] if isinstance(a, list) else a) for a in args)
    torch.library.opcheck(op.forward_op, args,
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
