"""The nn.Module token mixers of a generated package: valid kernel inputs from hidden states, outputs
equal to the reference on those inputs, varlen equal to a loop, and shapes a model expects."""

import dataclasses

import pytest
import torch

from slagen.api import import_package
from slagen.codegen.package import VariantBuild, build_package
from slagen.reference import attention
from slagen.spec import BUILTIN_SPECS

NAMES = ["retnet", "sla_gla", "sla_gdn", "zeros", "sla_mamba2"]
SPECS = [dataclasses.replace(BUILTIN_SPECS[n], head_dim_k=16, head_dim_v=16) for n in NAMES]
CLASSES = {"retnet": "RetnetLayer", "sla_gla": "SlaGlaLayer", "sla_gdn": "SlaGdnLayer", "zeros": "ZerosLayer",
           "sla_mamba2": "SlaMamba2Layer"}


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    root = build_package([VariantBuild(s) for s in SPECS], tmp_path_factory.mktemp("layers"), "layers_pkg")
    return import_package(str(root))


@pytest.mark.interpreter
@pytest.mark.parametrize("name", NAMES)
def test_layer_matches_reference_on_its_own_inputs(package, name):
    torch.manual_seed(0)
    layer = getattr(package, CLASSES[name])(hidden_size=32, num_heads=2)
    x = torch.randn(2, 21, 32)
    with torch.no_grad():
        y, state = layer(x, output_final_state=True)
        args = layer.inputs(x)
        q, k, v = args.pop("q"), args.pop("k"), args.pop("v")
        o_ref, state_ref = attention(layer.spec, q.double(), k.double(), v.double(),
                                     **{a: t.double() for a, t in args.items()}, output_final_state=True)
        y_ref = layer.o_proj(o_ref.float().reshape(2, 21, -1))
    assert y.shape == x.shape
    assert (y - y_ref).norm() / y_ref.norm() < 1e-4
    first = state[0] if isinstance(state, tuple) else state
    first_ref = state_ref[0] if isinstance(state_ref, tuple) else state_ref
    assert (first.double() - first_ref).norm() / first_ref.norm() < 1e-4


@pytest.mark.interpreter
def test_zeros_layer_varlen_equals_loop(package):
    torch.manual_seed(1)
    layer = package.ZerosLayer(hidden_size=32, num_heads=2)
    lengths = [5, 9, 7]
    xs = [torch.randn(1, n, 32) for n in lengths]
    cu = torch.tensor([0, 5, 14, 21], dtype=torch.int64)
    with torch.no_grad():
        packed, _ = layer(torch.cat(xs, 1), cu_seqlens=cu)
        looped = torch.cat([layer(x)[0] for x in xs], 1)
    assert (packed - looped).norm() / looped.norm() < 1e-4


@pytest.mark.interpreter
def test_fla_compatible_layers_of_the_package(package):
    """`<package>.layers.<fla name>` runs the package's kernels; it equals slagen.layers' class (kernels compiled
    on demand) on the same weights, and refuses head dims or a norm eps its variant was not built for."""
    import slagen.layers

    names = {"MultiScaleRetention", "SlaGatedLinearAttention", "SlaGatedDeltaNet", "ZeroSAttention",
             "SlaSimpleGatedLinearAttention", "Cache"}
    assert names <= set(package.layers.__all__) and all(hasattr(package, n) for n in names)
    torch.manual_seed(3)
    args = dict(hidden_size=32, num_heads=2, expand_k=1.0, expand_v=1.0, use_short_conv=True)
    built = package.layers.MultiScaleRetention(**args).eval()
    jit = slagen.layers.MultiScaleRetention(**args).eval()
    jit.load_state_dict(built.state_dict(), strict=True)
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        want, got = jit(x)[0], built(x)[0]
    assert (got - want).norm() / want.norm() < 1e-5
    with pytest.raises(ValueError, match="^head dims: .*head_dim_k=16, head_dim_v=16.* give 32, 64"):
        package.MultiScaleRetention(hidden_size=64, num_heads=2)
    with pytest.raises(ValueError, match="^norm_eps: .*eps 1e-06"):
        package.SlaGatedDeltaNet(hidden_size=32, num_heads=2, head_dim=16, expand_v=1.0)
    package.SlaGatedDeltaNet(hidden_size=32, num_heads=2, head_dim=16, expand_v=1.0, norm_eps=1e-6)
