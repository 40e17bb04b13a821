"""slagen.layers against fla 0.6's layers (computed on the CPU through fla's naive references): a state_dict
saved from fla's layer loads with strict=True and gives fla's output; SLA layers load it with strict=False
and equal the base at init."""

import pytest
import torch

import fla_on_cpu

fla_layers = pytest.importorskip("fla.layers", reason="fla 0.6 (test extra flash-linear-attention) not installed")
import slagen.layers as ours  # noqa: E402

H = 32  # hidden size: two heads of 16
CASES = {  # class name -> constructor arguments, the same for fla's layer and ours
    "LinearAttention": dict(hidden_size=H, num_heads=2, expand_k=1.0, expand_v=1.0),
    "MultiScaleRetention": dict(hidden_size=H, num_heads=2, expand_k=1.0, expand_v=1.0, use_short_conv=True),
    "SimpleGatedLinearAttention": dict(hidden_size=H, num_heads=2, num_kv_heads=1),
    "GatedLinearAttention": dict(hidden_size=H, num_heads=2, expand_k=1.0, fuse_norm=False, gate_fn="sigmoid",
                                 clamp_min=-0.5),
    "GatedDeltaNet": dict(hidden_size=H, num_heads=2, head_dim=16, expand_v=1.0),
}


def _fla_class(name):
    if name == "SimpleGatedLinearAttention":
        from fla.layers.simple_gla import SimpleGatedLinearAttention
        return SimpleGatedLinearAttention
    return getattr(fla_layers, name)


@pytest.fixture
def fla_cpu(monkeypatch):
    fla_on_cpu.patch(monkeypatch)


@pytest.mark.interpreter
@pytest.mark.parametrize("name", list(CASES))
def test_fla_state_dict_loads_strict_and_outputs_match(fla_cpu, name):
    torch.manual_seed(0)
    theirs = _fla_class(name)(**CASES[name]).eval()
    with torch.no_grad():  # fla initialises some weights to ones/zeros: move every one off its init
        for p in theirs.parameters():
            p.add_(0.1 * torch.randn_like(p))
    mine = getattr(ours, name)(**CASES[name]).eval()
    mine.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 9, H)
    with torch.no_grad():
        want = theirs(x)[0]
        got = mine(x)[0]
    assert got.shape == want.shape
    assert (got - want).norm() / want.norm() < 1e-5, name

    sla = getattr(ours, "Sla" + name)(**CASES[name]).eval()
    missing, unexpected = sla.load_state_dict(theirs.state_dict(), strict=False)
    assert unexpected == [] and missing == ["read_gate_proj.weight"]
    with torch.no_grad():
        got_sla = sla(x)[0]
    assert (got_sla - want).norm() / want.norm() < 1e-5, "Sla" + name


@pytest.mark.interpreter
def test_gated_deltanet_grouped_value_heads(fla_cpu):
    """fla's GVA (num_v_heads = 2 * num_heads): the same parameters load strictly, the same output and gradients:
    a decode-size input (the recurrent kernel) and, over 64 tokens, the chunked forward and the backward (each
    value head j reads q/k head j // 2 in place, from views of the projections)."""
    args = dict(hidden_size=H, num_heads=2, num_v_heads=4, head_dim=16, expand_v=1.0)
    torch.manual_seed(5)
    theirs = fla_layers.GatedDeltaNet(**args).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.1 * torch.randn_like(p))
    mine = ours.GatedDeltaNet(**args).eval()
    mine.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 5, H)
    with torch.no_grad():
        want, got = theirs(x)[0], mine(x)[0]
    assert (got - want).norm() / want.norm() < 1e-5
    assert mine.a_proj.weight.shape[0] == mine.A_log.shape[0] == 4
    assert mine.spec.delta_gate == "mamba"  # the gate and its gradients (A_log, dt_bias below) in the kernels
    x = torch.randn(1, 70, H, requires_grad=True)  # over 64 tokens, with autograd: the chunked forward, backward
    names = ["q_proj.weight", "k_proj.weight", "v_proj.weight", "a_proj.weight", "b_proj.weight", "A_log", "dt_bias"]
    outs, grads = [], []
    for layer in (theirs, mine):
        params = dict(layer.named_parameters())
        outs.append(layer(x)[0])
        grads.append(torch.autograd.grad(outs[-1].square().sum(), [x] + [params[n] for n in names]))
    assert (outs[1] - outs[0]).norm() / outs[0].norm() < 1e-5
    for n, w, g in zip(["x"] + names, *grads):
        assert (g - w).norm() / w.norm() < 1e-4, n


@pytest.mark.interpreter
def test_generation_through_fla_cache_object():
    """The cache fla's models pass (fla.models.cache_utils.Cache, on Hugging Face's Cache) works as ours."""
    from fla.models.cache_utils import Cache as FlaCache

    torch.manual_seed(4)
    layer = ours.MultiScaleRetention(layer_idx=0, **CASES["MultiScaleRetention"]).eval()
    x = torch.randn(2, 4, H)
    with torch.no_grad():
        full = layer(x)[0]
        cache = FlaCache()
        steps = torch.cat([layer(x[:, t:t + 1], past_key_values=cache, use_cache=True)[0] for t in range(4)], 1)
    assert cache.get_seq_length(0) == 4
    assert (steps - full).abs().max() <= 1e-5 * full.abs().max()
