"""`MultiScaleRetention` (RetNet) with fla 0.6's constructor, parameters and forward: RoPE on q and k, one
fixed decay per head `log(1 - 2^(-5-h))` (spec decay "fixed")."""

from __future__ import annotations

from typing import Optional

import torch

from .base import Step
from .heads import ExpandedHeadsLayer
from .padding import token_positions
from .parts import rotary


class MultiScaleRetention(ExpandedHeadsLayer):
    MODES = ("chunk", "fused_chunk", "parallel", "fused_recurrent")

    def __init__(self, mode: str = "chunk", hidden_size: int = 1024, expand_k: float = 1.0, expand_v: float = 2.0,
                 num_heads: int = 8, num_kv_heads: Optional[int] = None, feature_map: Optional[str] = None,
                 use_short_conv: bool = False, conv_size: int = 4, conv_bias: bool = False,
                 use_output_gate: bool = True, gate_fn: str = "swish", elementwise_affine: Optional[bool] = True,
                 norm_eps: float = 1e-5, fuse_norm: bool = True, layer_idx: Optional[int] = None, **kwargs) -> None:
        super().__init__()
        self.setup(mode=mode, hidden_size=hidden_size, expand_k=expand_k, expand_v=expand_v, num_heads=num_heads,
                   num_kv_heads=num_kv_heads, feature_map=feature_map, use_short_conv=use_short_conv,
                   conv_size=conv_size, conv_bias=conv_bias, use_output_gate=use_output_gate, gate_fn=gate_fn,
                   elementwise_affine=elementwise_affine, norm_eps=norm_eps, fuse_norm=fuse_norm, layer_idx=layer_idx)

    def positions(self, step: Step, batch: int) -> torch.Tensor:
        """Rotary positions as fla counts them: the cache's token count, less the padding of each row."""
        seen = step.past_key_values.get_seq_length(self.layer_idx) if step.past_key_values is not None else 0
        rows = batch if step.cu_seqlens is None else step.cu_seqlens.numel() - 1
        offsets = torch.full((rows,), seen, dtype=torch.long, device=step.x.device)
        if step.attention_mask is not None and step.cu_seqlens is not None and seen > 0:
            mask = step.attention_mask
            offsets = offsets + mask.sum(-1).long() - mask.shape[-1]
        return token_positions(step.x.shape[0], step.x.shape[1], step.cu_seqlens, offsets, step.x.device)

    def mix(self, step: Step):
        q, k, v, windows = self.heads(step)
        positions = self.positions(step, step.x.shape[0])
        q, k = rotary(q, positions), rotary(k, positions)
        H = self.num_heads
        g_gamma = torch.log1p(-torch.pow(2.0, -5.0 - torch.arange(H, dtype=torch.float32, device=q.device)))
        o, state = self.attend(step, q, k, v, self.norm, g_gamma=g_gamma)
        return self.output(step, o), dict(recurrent_state=state, conv_state=windows)
