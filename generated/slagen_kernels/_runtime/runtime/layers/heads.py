"""The layout fla's MultiScaleRetention, SimpleGatedLinearAttention and GatedLinearAttention share: key and
value dims `hidden_size * expand_k / expand_v` split over `num_heads`, k and v over `num_kv_heads` (repeated
to `num_heads` as fla does), optional short convolutions, and a per-head RMSNorm with an output gate."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .base import FlaLayer, Step, refuse
from .parts import FusedRMSNormGated, RMSNorm, activation


def split_dims(hidden_size: int, expand_k: float, expand_v: float, num_heads: int,
               num_kv_heads: Optional[int]) -> tuple[int, int, int, int]:
    """(key_dim, value_dim, num_kv_heads, groups), each refused with the argument it comes from."""
    kv_heads = num_heads if num_kv_heads is None else num_kv_heads
    if kv_heads <= 0 or num_heads % kv_heads:
        raise refuse("num_kv_heads", num_kv_heads, f"a divisor of num_heads = {num_heads}")
    dims = []
    for argument, expand in (("expand_k", expand_k), ("expand_v", expand_v)):
        dim = round(hidden_size * expand)
        if not math.isclose(hidden_size * expand, dim) or dim % num_heads:
            raise refuse(argument, expand, f"hidden_size * {argument} an integer divisible by num_heads = {num_heads}")
        dims.append(dim)
    return dims[0], dims[1], kv_heads, num_heads // kv_heads


class ExpandedHeadsLayer(FlaLayer):
    MODES = ("chunk", "fused_chunk", "fused_recurrent")

    def setup(self, *, mode: str, hidden_size: int, expand_k: float, expand_v: float, num_heads: int,
              num_kv_heads: Optional[int], feature_map: Optional[str], use_short_conv: bool, conv_size: int,
              conv_bias: bool, use_output_gate: bool, gate_fn: str, elementwise_affine: Optional[bool],
              norm_eps: float, fuse_norm: bool, layer_idx: Optional[int]) -> None:
        self.check_mode(mode)
        if feature_map is not None:
            raise refuse("feature_map", feature_map, f"None ({type(self).__name__} applies no feature map)")
        self.hidden_size, self.expand_k, self.expand_v, self.layer_idx = hidden_size, expand_k, expand_v, layer_idx
        self.key_dim, self.value_dim, self.num_kv_heads, self.num_kv_groups = split_dims(
            hidden_size, expand_k, expand_v, num_heads, num_kv_heads)
        self.num_heads, self.use_output_gate = num_heads, use_output_gate
        self.head_k_dim, self.head_v_dim = self.key_dim // num_heads, self.value_dim // num_heads
        self.key_dim_per_group = self.key_dim // self.num_kv_groups
        self.value_dim_per_group = self.value_dim // self.num_kv_groups
        self.bind_kernels(self.head_k_dim, self.head_v_dim, norm_eps)

        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim_per_group, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim_per_group, bias=False)
        if use_output_gate:
            self.g_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.add_short_convs(use_short_conv, conv_size, conv_bias,
                             (self.key_dim, self.key_dim_per_group, self.value_dim_per_group))
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)
        self.gate_fn = activation("gate_fn", gate_fn)
        self.fuse_norm_and_gate = gate_fn == "swish" and fuse_norm and use_output_gate
        if self.fuse_norm_and_gate:
            self.g_norm_swish_gate = FusedRMSNormGated(self.head_v_dim, elementwise_affine=elementwise_affine,
                                                       eps=norm_eps)
        else:
            self.g_norm = RMSNorm(self.head_v_dim, elementwise_affine=elementwise_affine, eps=norm_eps,
                                  dtype=torch.float32)
        self.add_head_gates(hidden_size, num_heads)

    @property
    def norm(self) -> RMSNorm:
        return self.g_norm_swish_gate if self.fuse_norm_and_gate else self.g_norm

    def kv_heads(self, x: torch.Tensor, head_dim: int) -> torch.Tensor:
        """[.., kv_heads * D] -> [.., num_heads, D]: kv head j serves heads j*G .. j*G+G-1, as fla repeats."""
        x = x.unflatten(-1, (-1, head_dim))
        return x if self.num_kv_groups == 1 else x.repeat_interleave(self.num_kv_groups, dim=-2)

    def heads(self, step: Step):
        q, k, v, windows = self.project_qkv(step)
        return q.unflatten(-1, (-1, self.head_k_dim)), self.kv_heads(k, self.head_k_dim), \
            self.kv_heads(v, self.head_v_dim), windows

    def output(self, step: Step, o: torch.Tensor) -> torch.Tensor:
        g = self.g_proj(step.x).unflatten(-1, (-1, self.head_v_dim)) if self.use_output_gate else None
        o = self.norm_and_gate(o, self.norm, g, self.gate_fn, self.fuse_norm_and_gate)
        return self.o_proj(o.flatten(-2))
