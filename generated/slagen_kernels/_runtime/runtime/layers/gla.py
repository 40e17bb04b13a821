"""`GatedLinearAttention` (spec decay "vector") with fla 0.6's constructor, parameters and forward: per-channel
decay from a low-rank projection, `logsigmoid(gk_proj(x)) / gate_logit_normalizer`, optionally clamped."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import Step
from .heads import ExpandedHeadsLayer


class GatedLinearAttention(ExpandedHeadsLayer):
    MODES = ("chunk", "fused_recurrent", "fused_chunk")

    def __init__(self, mode: str = "chunk", hidden_size: int = 1024, expand_k: float = 0.5, expand_v: float = 1.0,
                 num_heads: int = 4, num_kv_heads: Optional[int] = None, feature_map: Optional[str] = None,
                 use_short_conv: bool = False, conv_size: int = 4, conv_bias: bool = False,
                 use_output_gate: bool = True, gate_fn: str = "swish", elementwise_affine: Optional[bool] = True,
                 norm_eps: float = 1e-5, gate_logit_normalizer: int = 16, gate_low_rank_dim: int = 16,
                 clamp_min: Optional[float] = None, fuse_norm: bool = True, layer_idx: Optional[int] = None) -> None:
        super().__init__()
        self.setup(mode=mode, hidden_size=hidden_size, expand_k=expand_k, expand_v=expand_v, num_heads=num_heads,
                   num_kv_heads=num_kv_heads, feature_map=feature_map, use_short_conv=use_short_conv,
                   conv_size=conv_size, conv_bias=conv_bias, use_output_gate=use_output_gate, gate_fn=gate_fn,
                   elementwise_affine=elementwise_affine, norm_eps=norm_eps, fuse_norm=fuse_norm, layer_idx=layer_idx)
        self.gk_proj = nn.Sequential(nn.Linear(hidden_size, gate_low_rank_dim, bias=False),
                                     nn.Linear(gate_low_rank_dim, self.key_dim_per_group, bias=True))
        self.gate_logit_normalizer, self.clamp_min = gate_logit_normalizer, clamp_min

    def mix(self, step: Step):
        q, k, v, windows = self.heads(step)
        g = F.logsigmoid(self.kv_heads(self.gk_proj(step.x), self.head_k_dim).float()) / self.gate_logit_normalizer
        if self.clamp_min is not None:
            g = torch.clamp_min(g, self.clamp_min)
        o, state = self.attend(step, q, k, v, self.norm, g=g)
        return self.output(step, o), dict(recurrent_state=state, conv_state=windows)
