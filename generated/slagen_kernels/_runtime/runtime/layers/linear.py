"""`LinearAttention` with fla 0.6's constructor, parameters and forward: feature maps on q and k (the learnable
`elementwise_product` by default), optional sum-normalised q/k, a per-head output RMSNorm."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import FlaLayer, Step, refuse
from .heads import split_dims
from .parts import HadamardFeatureMap, RMSNorm

FEATURE_MAPS = ("elementwise_product", "identity", "relu", "elu")


def _elu_p1(x: torch.Tensor) -> torch.Tensor:
    return (F.elu(x.float(), 1.0) + 1.0).to(x.dtype)


class LinearAttention(FlaLayer):
    MODES = ("chunk", "fused_chunk", "fused_recurrent")

    def __init__(self, mode: str = "chunk", hidden_size: int = 1024, expand_k: float = 1.0, expand_v: float = 1.0,
                 num_heads: int = 8, num_kv_heads: Optional[int] = None, feature_map: str = "elementwise_product",
                 tie_feature_map_qk: bool = False, output_norm: str = "rmsnorm", norm_q: bool = False,
                 norm_k: bool = False, do_feature_map_norm: bool = False, elementwise_affine: bool = True,
                 norm_eps: float = 1e-5, layer_idx: Optional[int] = None, **kwargs) -> None:
        super().__init__()
        self.check_mode(mode)
        if do_feature_map_norm:
            raise refuse("do_feature_map_norm", do_feature_map_norm, "False (no normalised linear attention kernel)")
        if output_norm not in ("rmsnorm", "identity"):
            raise refuse("output_norm", output_norm, "'rmsnorm' or 'identity'")
        self.hidden_size, self.num_heads, self.layer_idx = hidden_size, num_heads, layer_idx
        self.key_dim, self.value_dim, self.num_kv_heads, self.num_kv_groups = split_dims(
            hidden_size, expand_k, expand_v, num_heads, num_kv_heads)
        self.head_k_dim, self.head_v_dim = self.key_dim // num_heads, self.value_dim // num_heads
        self.key_dim_per_group = self.key_dim // self.num_kv_groups
        self.value_dim_per_group = self.value_dim // self.num_kv_groups
        self.do_feature_map_norm, self.norm_q, self.norm_k = False, norm_q, norm_k
        self.bind_kernels(self.head_k_dim, self.head_v_dim, norm_eps)

        if feature_map == "elementwise_product":
            self.feature_map_q = HadamardFeatureMap(self.head_k_dim)
            self.feature_map_k = self.feature_map_q if tie_feature_map_qk else HadamardFeatureMap(self.head_k_dim)
        elif feature_map == "identity":
            self.feature_map_q = self.feature_map_k = nn.Identity()
        elif feature_map == "relu":
            self.feature_map_q = self.feature_map_k = nn.ReLU()
        elif feature_map == "elu":
            self.feature_map_q = self.feature_map_k = _elu_p1
        else:
            raise refuse("feature_map", feature_map, f"one of {FEATURE_MAPS}")
        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim_per_group, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim_per_group, bias=False)
        self.norm = (RMSNorm(self.head_v_dim, elementwise_affine=elementwise_affine, eps=norm_eps, dtype=torch.float32)
                     if output_norm == "rmsnorm" else nn.Identity())
        self.require_norm_for_fused(self.norm if output_norm == "rmsnorm" else None, "output_norm", output_norm)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)
        self.add_head_gates(hidden_size, num_heads)

    def mix(self, step: Step):
        x = step.x
        q = self.q_proj(x).unflatten(-1, (-1, self.head_k_dim))
        k = self.k_proj(x).unflatten(-1, (-1, self.head_k_dim))
        v = self.v_proj(x).unflatten(-1, (-1, self.head_v_dim))
        if self.num_kv_groups > 1:
            k, v = (t.repeat_interleave(self.num_kv_groups, dim=-2) for t in (k, v))
        q, k = self.feature_map_q(q), self.feature_map_k(k)
        if self.norm_q:
            q = q / (q.sum(-1, True) + 1e-4)
        if self.norm_k:
            k = k / (k.sum(-1, True) + 1e-4)
        norm = self.norm if isinstance(self.norm, RMSNorm) else None
        o, state = self.attend(step, q, k, v, norm)
        if self.spec.output_norm != "rms":
            o = self.norm(o)
        return self.o_proj(o.flatten(-2)), dict(recurrent_state=state)
