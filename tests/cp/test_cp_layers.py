"""fla-style layers take `cp_context` through `**kwargs` (as fla's layers do): with a gloo group of one the
layer's output and gradients equal the plain call; layers whose own token mixing would cross ranks refuse it."""

from __future__ import annotations

import pytest
import torch

import slagen
from slagen.layers import GatedDeltaNet, MultiScaleRetention, ZeroSAttention


@pytest.mark.interpreter
def test_layer_passes_cp_context_to_its_kernel(group):
    torch.manual_seed(0)
    layer = MultiScaleRetention(hidden_size=32, num_heads=2)
    x = torch.randn(1, 20, 32)
    cu = torch.tensor([0, 7, 20])
    xs = [x.clone().requires_grad_() for _ in range(2)]
    plain = layer(xs[0], cu_seqlens=cu)[0]
    split = layer(xs[1], cp_context=slagen.cp.context(group, cu))[0]
    torch.testing.assert_close(split, plain, rtol=1e-5, atol=1e-6)
    dy = torch.randn_like(plain)
    (g0,) = torch.autograd.grad(plain, xs[0], dy)
    (g1,) = torch.autograd.grad(split, xs[1], dy)
    torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-6)


def test_layers_that_mix_tokens_themselves_refuse_cp_context(group):
    ctx = slagen.cp.context(group)
    x = torch.randn(1, 8, 32)
    with pytest.raises(ValueError, match="^cp_context: expected None with use_short_conv=True"):
        GatedDeltaNet(hidden_size=32, num_heads=2, head_dim=16, use_short_conv=True)(x, cp_context=ctx)
    with pytest.raises(ValueError, match="^cp_context: expected None: ZeroSAttention mixes tokens outside"):
        ZeroSAttention(hidden_size=32, num_heads=2)(x, cp_context=ctx)
    with pytest.raises(ValueError, match="^cp_context: expected a packed"):
        MultiScaleRetention(hidden_size=32, num_heads=2)(torch.randn(2, 8, 32), cp_context=ctx)
