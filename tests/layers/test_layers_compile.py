"""torch.compile of a layer: the kernels are torch custom ops (`slagen.runtime.library`), so a layer compiles
with fullgraph=True and gives the eager output and input gradient. GatedDeltaNet: the layer with the most
torch around its kernel (short convolutions, gates, output norm and gate)."""

import torch

import slagen.layers as L


def test_gated_delta_net_compiles_fullgraph_and_equals_eager():
    torch.manual_seed(0)
    layer = L.GatedDeltaNet(hidden_size=32, num_heads=2, head_dim=16, expand_v=1.0)
    x = torch.randn(2, 24, 32)
    x_eager, x_comp = x.clone().requires_grad_(), x.clone().requires_grad_()
    o_eager = layer(x_eager)[0]
    o_comp = torch.compile(layer, fullgraph=True)(x_comp)[0]
    do = torch.randn_like(o_eager)
    o_eager.backward(do)
    o_comp.backward(do)
    torch.testing.assert_close(o_comp, o_eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_comp.grad, x_eager.grad, rtol=1e-5, atol=1e-5)
