"""fla layer options slagen's layers do not support are refused at construction with one line naming the
argument, the value and what is allowed (no kernel runs here)."""

import pytest

import slagen.layers as L

REFUSED = [
    (L.GatedDeltaNet, dict(num_heads=2, head_dim=16, num_v_heads=3),
     "^num_v_heads: expected None or a multiple of num_heads = 2"),
    (L.GatedDeltaNet, dict(num_heads=2, head_dim=16, allow_neg_eigval=True), "^allow_neg_eigval: "),
    (L.GatedDeltaNet, dict(num_heads=2, head_dim=16, output_gate_activation="relu"), "^output_gate_activation: "),
    (L.GatedLinearAttention, dict(num_heads=2, feature_map="relu"), "^feature_map: expected None"),
    (L.GatedLinearAttention, dict(num_heads=2, mode="parallel"), "^mode: expected one of"),
    (L.SimpleGatedLinearAttention, dict(num_heads=3), "^expand_k: "),
    (L.MultiScaleRetention, dict(num_heads=2, num_kv_heads=3), "^num_kv_heads: "),
    (L.LinearAttention, dict(num_heads=2, feature_map="hedgehog"), "^feature_map: expected one of"),
    (L.LinearAttention, dict(num_heads=2, do_feature_map_norm=True), "^do_feature_map_norm: "),
    (L.SlaLinearAttention, dict(num_heads=2, output_norm="identity"), "^output_norm: expected a per-head RMSNorm"),
    (L.ZeroSAttention, dict(num_heads=2, is_first_layer=True), "^is_first_layer: expected False"),
    (L.ZeroSAttention, dict(num_heads=2, use_associative=False), "^use_associative: expected True"),
    (L.ZeroSAttention, dict(num_heads=2, is_causal=False), "^is_causal: expected True"),
    (L.GatedLinearAttention, dict(num_heads=8, expand_k=1.0), "^head dims: .*head_k_dim=4"),
]


IDS = [f"{c.__name__}-{next(iter(set(k) - {'num_heads', 'head_dim'}), 'heads')}" for c, k, _ in REFUSED]


@pytest.mark.parametrize("cls, kwargs, message", REFUSED, ids=IDS)
def test_unsupported_options_are_refused(cls, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        cls(hidden_size=32, **kwargs)
    assert "\n" not in str(info.value)


def test_layer_idx_is_required_with_a_cache():
    import torch

    layer = L.GatedLinearAttention(hidden_size=32, num_heads=2, expand_k=1.0)
    with pytest.raises(ValueError, match="^layer_idx: "):
        layer(torch.randn(1, 2, 32), past_key_values=L.Cache(), use_cache=True)
    with pytest.raises(ValueError, match=r"^attention_mask: expected a 0/1 padding matrix \[batch_size, seq_len\]"):
        layer(torch.randn(1, 2, 32), attention_mask=torch.ones(1, 1))
