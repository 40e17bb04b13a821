"""A model built from a generated package's layers compiles with torch.compile(fullgraph=True): each call
is one custom op (the bucket choice happens inside it), and forward and gradients match eager."""

import dataclasses

import pytest
import torch

from slagen.api import import_package
from slagen.codegen.package import VariantBuild, build_package
from slagen.spec import BUILTIN_SPECS

SPECS = [dataclasses.replace(BUILTIN_SPECS[n], head_dim_k=16, head_dim_v=16) for n in ("retnet", "sla_gla")]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    root = build_package([VariantBuild(s) for s in SPECS], tmp_path_factory.mktemp("compile"), "compile_pkg")
    return import_package(str(root))


@pytest.mark.interpreter
def test_package_layers_compile_fullgraph(package):
    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = package.RetnetLayer(hidden_size=32, num_heads=2)
            self.b = package.SlaGlaLayer(hidden_size=32, num_heads=2)

        def forward(self, x):
            return self.b(self.a(x)[0] + x)[0]

    model = Model()
    x = torch.randn(2, 19, 32, requires_grad=True)
    eager = model(x)
    eager.square().sum().backward()
    eager_grads = [p.grad.clone() for p in model.parameters()] + [x.grad.clone()]
    model.zero_grad()
    x.grad = None
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    out.square().sum().backward()
    assert (out - eager).norm() / eager.norm() < 1e-5
    for got, want in zip([p.grad for p in model.parameters()] + [x.grad], eager_grads):
        assert (got - want).norm() / want.norm().clamp_min(1e-12) < 1e-4
