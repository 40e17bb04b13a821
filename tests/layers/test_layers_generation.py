"""slagen.layers: token-by-token generation through the cache equals the full-sequence forward (every family,
SLA and ZeroS); left padding never changes a real token's output; short inputs take the recurrent kernel as
fla's layers do; ZeroSAttention loads the authors' state_dict with strict=True and gives their output."""

from types import SimpleNamespace

import pytest
import torch

import slagen.layers as L
from authors_zeros import AuthorsZeroS

HID = 32
ARGS = {  # tiny shapes: two heads of 16, with the short convolutions where fla's layer has them
    "LinearAttention": dict(num_heads=2, expand_k=1.0, expand_v=1.0),
    "MultiScaleRetention": dict(num_heads=2, expand_k=1.0, expand_v=1.0, use_short_conv=True),
    "SimpleGatedLinearAttention": dict(num_heads=2),
    "GatedLinearAttention": dict(num_heads=2, expand_k=1.0, use_short_conv=True),
    "GatedDeltaNet": dict(num_heads=2, head_dim=16, expand_v=1.0),
}
CLASSES = [*ARGS, *("Sla" + n for n in ARGS), "ZeroSAttention"]


def make(name, seed=0):
    torch.manual_seed(seed)
    layer = getattr(L, name)(hidden_size=HID, layer_idx=0, **ARGS.get(name.removeprefix("Sla"), dict(num_heads=2)))
    with torch.no_grad():  # off the init (zero gate logits, unit norms) so that every parameter matters
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer.eval()


@pytest.mark.interpreter
@pytest.mark.parametrize("name", CLASSES)
def test_generation_through_cache_equals_full_forward(name):
    layer = make(name)
    x = torch.randn(2, 5, HID)
    with torch.no_grad():
        full = layer(x)[0]
        cache = L.Cache()
        prefill = layer(x[:, :3], past_key_values=cache, use_cache=True)[0]
        steps = [layer(x[:, t:t + 1], past_key_values=cache, use_cache=True)[0] for t in range(3, 5)]
    got = torch.cat([prefill, *steps], 1)
    assert cache.get_seq_length(0) == 5
    assert (got - full).abs().max() <= 1e-5 * full.abs().max() + 1e-6, name


@pytest.mark.interpreter
@pytest.mark.parametrize("name", ["MultiScaleRetention", "GatedDeltaNet", "ZeroSAttention"])
def test_left_padding_never_changes_real_tokens(name):
    layer = make(name, seed=1)
    lengths = [5, 3]
    xs = [torch.randn(1, n, HID) for n in lengths]
    T = max(lengths)
    padded = torch.cat([torch.cat([torch.randn(1, T - n, HID) * 100, x], 1) for n, x in zip(lengths, xs)])
    mask = torch.tensor([[0] * (T - n) + [1] * n for n in lengths])
    with torch.no_grad():
        cache = L.Cache()
        y = layer(padded, attention_mask=mask, past_key_values=cache, use_cache=True)[0]
        nxt = torch.randn(2, 1, HID)
        y_next = layer(nxt, attention_mask=torch.cat([mask, torch.ones(2, 1, dtype=mask.dtype)], 1),
                       past_key_values=cache, use_cache=True)[0]
        for b, (n, x) in enumerate(zip(lengths, xs)):
            alone = layer(torch.cat([x, nxt[b:b + 1]], 1))[0]
            assert (y[b, T - n:] - alone[0, :n]).abs().max() < 1e-5
            assert (y_next[b] - alone[0, n:]).abs().max() < 1e-5
        assert y[1, :T - lengths[1]].abs().max() == 0  # padded positions give zeros


def test_short_inputs_take_the_recurrent_kernel(monkeypatch):
    layer = make("GatedLinearAttention")
    kinds = []  # the kernel each call asks for (a stand-in answers: the choice is what is tested here)
    monkeypatch.setattr(layer.kernel, "_run", lambda kind, q, k, v, inputs: kinds.append(kind) or (v.clone(), None))
    x = torch.randn(1, 65, HID)
    with torch.no_grad():
        layer(x[:, :64])  # at most 64 tokens: recurrent, as fla
        layer(x)  # longer: the layer's mode ("chunk")
    layer(x[:, :4])  # autograd on: chunked, as fla's training path
    layer.mode = "fused_recurrent"
    with torch.no_grad():
        layer(x)
    assert kinds == ["recurrent", "forward", "forward", "recurrent"]


@pytest.mark.interpreter
def test_zeros_loads_the_authors_state_dict_and_matches_their_output():
    torch.manual_seed(2)
    theirs = AuthorsZeroS(SimpleNamespace(n_embd=HID, n_head=2, bias=True, block_size=16)).eval()
    with torch.no_grad():
        theirs.prior_mu.normal_()
        theirs.prior_log_tau.normal_()
    state = {k: v for k, v in theirs.state_dict().items() if k not in ("cos", "sin", "bias")}
    mine = L.ZeroSAttention(hidden_size=HID, num_heads=2).eval()
    mine.load_state_dict(state, strict=True)
    x = torch.randn(2, 12, HID)
    with torch.no_grad():
        want, got = theirs(x), mine(x)[0]
    assert (got - want).abs().max() < 1e-5 * want.abs().max() + 1e-6
