"""`SimpleGatedLinearAttention` (fla's name for the Mamba2-style scalar decay; spec decay "scalar") with fla
0.6's constructor, parameters and forward: per-head decay `logsigmoid(gk_proj(x)) / gate_logit_normalizer`."""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import nn

from .base import Step
from .heads import ExpandedHeadsLayer


class SimpleGatedLinearAttention(ExpandedHeadsLayer):
    MODES = ("chunk", "fused_recurrent")

    def __init__(self, mode: str = "chunk", hidden_size: int = 1024, expand_k: float = 1.0, expand_v: float = 1.0,
                 num_heads: int = 4, num_kv_heads: Optional[int] = None, feature_map: Optional[str] = None,
                 use_short_conv: bool = True, conv_size: int = 4, conv_bias: bool = False, gate_fn: str = "swish",
                 elementwise_affine: Optional[bool] = True, norm_eps: float = 1e-5, gate_logit_normalizer: int = 16,
                 fuse_norm: bool = True, layer_idx: Optional[int] = None) -> None:
        super().__init__()
        self.setup(mode=mode, hidden_size=hidden_size, expand_k=expand_k, expand_v=expand_v, num_heads=num_heads,
                   num_kv_heads=num_kv_heads, feature_map=feature_map, use_short_conv=use_short_conv,
                   conv_size=conv_size, conv_bias=conv_bias, use_output_gate=True, gate_fn=gate_fn,
                   elementwise_affine=elementwise_affine, norm_eps=norm_eps, fuse_norm=fuse_norm, layer_idx=layer_idx)
        self.gk_proj = nn.Linear(hidden_size, num_heads)
        self.gate_logit_normalizer = gate_logit_normalizer

    def mix(self, step: Step):
        q, k, v, windows = self.heads(step)
        g = F.logsigmoid(self.gk_proj(step.x).float()) / self.gate_logit_normalizer
        o, state = self.attend(step, q, k, v, self.norm, g=g)
        return self.output(step, o), dict(recurrent_state=state, conv_state=windows)
