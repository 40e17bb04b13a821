"""fla 0.6's layers on the CPU: their GPU ops replaced, for the test's duration, by fla's own naive references
(`fla.ops.*.naive`, `rms_norm_ref`, `rotary_embedding_ref`) and, where fla has none (the depthwise causal
convolution and its fused gate / L2 norm preludes), a few lines of PyTorch with the same meaning."""

from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F


def _conv(x, weight, bias, activation):  # x [B, T, D], weight [D, W]
    W = weight.shape[-1]
    y = F.conv1d(F.pad(x.transpose(1, 2), (W - 1, 0)), weight.unsqueeze(1), bias, groups=x.shape[-1]).transpose(1, 2)
    return F.silu(y) if activation in ("silu", "swish") else y


def _l2norm(x):
    return x / torch.sqrt(x.float().square().sum(-1, keepdim=True) + 1e-6)


def patch(monkeypatch) -> None:
    from fla.modules import FusedRMSNormGated, RMSNorm, ShortConvolution
    from fla.modules.norm.layernorm import rms_norm_ref
    from fla.modules.norm.layernorm_gated import rms_norm_ref as gated_rms_norm_ref
    from fla.modules.rotary import RotaryEmbedding
    from fla.modules.rotary.ops import rotary_embedding_ref
    from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule
    from fla.ops.gla.naive import naive_recurrent_gla
    from fla.ops.linear_attn.naive import naive_recurrent_linear_attn
    from fla.ops.retention.naive import naive_retention
    from fla.ops.simple_gla.naive import naive_recurrent_simple_gla

    monkeypatch.setattr(RMSNorm, "forward", lambda self, x, *a, **k: rms_norm_ref(
        x, self.weight, getattr(self, "bias", None), eps=self.eps, upcast=True))
    monkeypatch.setattr(FusedRMSNormGated, "forward", lambda self, x, g, *a, **k: gated_rms_norm_ref(
        x, self.weight, None, z=g, eps=self.eps, norm_before_gate=True))
    monkeypatch.setattr(ShortConvolution, "forward", lambda self, x, *a, output_final_state=False, **k: (
        _conv(x, self.weight.squeeze(1), self.bias, self.activation), None))

    def rotate(self, q, k, seqlen_offset=0, cu_seqlens=None, max_seqlen=None, **_):
        assert cu_seqlens is None and isinstance(seqlen_offset, int)
        freqs = torch.outer(torch.arange(q.shape[1], dtype=torch.float32) + seqlen_offset, self.inv_freq)
        return (rotary_embedding_ref(q, freqs.cos(), freqs.sin()), rotary_embedding_ref(k, freqs.cos(), freqs.sin()))

    monkeypatch.setattr(RotaryEmbedding, "forward", rotate)

    def gla(q, k, v, g=None, gk=None, initial_state=None, output_final_state=False, **_):
        return naive_recurrent_gla(q, k, v, g if g is not None else gk, initial_state, output_final_state)

    def simple_gla(q, k, v, g, initial_state=None, output_final_state=False, **_):
        return naive_recurrent_simple_gla(q, k, v, g, initial_state=initial_state,
                                          output_final_state=output_final_state)

    def retention(q, k, v, **_):
        return naive_retention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2), None

    def linear(q, k, v, initial_state=None, output_final_state=False, normalize=False, **_):
        return naive_recurrent_linear_attn(q, k, v, initial_state=initial_state,
                                           output_final_state=output_final_state, normalize=normalize)

    def delta(q, k, v, g, beta, A_log, dt_bias, initial_state=None, output_final_state=False, **_):
        g = -A_log.float().exp() * F.softplus(g.float() + dt_bias)  # fla's use_gate_in_kernel
        if v.shape[2] != q.shape[2]:  # fla's kernels read grouped value heads; its naive reference wants them repeated
            q, k = (x.repeat_interleave(v.shape[2] // q.shape[2], dim=2) for x in (q, k))
        return naive_recurrent_gated_delta_rule(_l2norm(q), _l2norm(k), v, beta.float().sigmoid(), g,
                                                initial_state=initial_state, output_final_state=output_final_state)

    ops = {"gla": ("chunk_gla", "fused_chunk_gla", "fused_recurrent_gla", gla),
           "simple_gla": ("chunk_simple_gla", "fused_recurrent_simple_gla", simple_gla),
           "multiscale_retention": ("chunk_retention", "fused_chunk_retention", "fused_recurrent_retention",
                                    "parallel_retention", retention),
           "linear_attn": ("chunk_linear_attn", "fused_chunk_linear_attn", "fused_recurrent_linear_attn", linear),
           "gated_deltanet": ("chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule", delta)}
    for module, (*names, fn) in ops.items():
        layer_module = importlib.import_module(f"fla.layers.{module}")
        for name in names:
            monkeypatch.setattr(layer_module, name, fn)
    for module in ("gla", "simple_gla"):  # fla's activations are Triton kernels too
        acts = importlib.import_module(f"fla.layers.{module}").ACT2FN
        for name, fn in (("sigmoid", torch.sigmoid), ("swish", F.silu), ("silu", F.silu)):
            monkeypatch.setitem(acts, name, fn)
    gdn = importlib.import_module("fla.layers.gated_deltanet")
    monkeypatch.setattr(gdn, "causal_conv1d", lambda x, weight, bias=None, activation=None, **_: (
        _conv(x, weight, bias, activation), None))
