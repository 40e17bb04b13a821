"""`GatedDeltaNet` with fla 0.6's constructor, parameters and forward: short convolutions on q, k, v, the
decay `-exp(A_log) * softplus(a_proj(x) + dt_bias)`, `beta = sigmoid(b_proj(x))` (computed in the kernels when
the layer's spec has delta_gate = "mamba", as slagen.layers' do; in PyTorch otherwise), q and k L2-normalised
(in the kernel: spec qk_l2norm), and a per-head RMSNorm with an output gate. `num_v_heads` (fla's grouped
value heads): v, a, b, A_log, dt_bias, the gate and the state carry num_v_heads heads, q and k num_heads; the
kernels map value head j to q/k head j // (num_v_heads // num_heads)."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import FlaLayer, Step, refuse
from .parts import FusedRMSNormGated, RMSNorm, activation


class GatedDeltaNet(FlaLayer):
    MODES = ("chunk", "fused_recurrent")

    def __init__(self, hidden_size: int = 2048, expand_v: float = 2, head_dim: int = 256, num_heads: int = 6,
                 num_v_heads: Optional[int] = None, mode: str = "chunk", use_gate: bool = True,
                 use_short_conv: bool = True, allow_neg_eigval: bool = False, conv_size: int = 4,
                 conv_bias: bool = False, layer_idx: Optional[int] = None, norm_eps: float = 1e-5,
                 output_gate_activation: str = "swish", **kwargs) -> None:
        super().__init__()
        self.check_mode(mode)
        num_v_heads = num_heads if num_v_heads is None else num_v_heads
        if not isinstance(num_v_heads, int) or num_v_heads < num_heads or num_v_heads % num_heads:
            # grouped value heads (fla's GVA): value head j reads q/k head j // (num_v_heads // num_heads), in the
            # kernels (q and k are never repeated here)
            raise refuse("num_v_heads", num_v_heads, f"None or a multiple of num_heads = {num_heads}")
        if allow_neg_eigval:
            raise refuse("allow_neg_eigval", allow_neg_eigval, "False (beta in (0, 1) only)")
        self.hidden_size, self.expand_v, self.head_dim, self.num_heads = hidden_size, expand_v, head_dim, num_heads
        self.num_v_heads, self.use_gate, self.allow_neg_eigval = num_v_heads, use_gate, False
        self.layer_idx = layer_idx
        self.head_k_dim, self.head_v_dim = head_dim, int(head_dim * expand_v)
        if not math.isclose(head_dim * expand_v, self.head_v_dim, rel_tol=1e-5):
            raise refuse("expand_v", expand_v, f"head_dim * expand_v an integer (head_dim = {head_dim})")
        self.key_dim, self.value_dim = num_heads * self.head_k_dim, num_v_heads * self.head_v_dim
        self.gate_fn = activation("output_gate_activation", output_gate_activation)
        self.bind_kernels(self.head_k_dim, self.head_v_dim, norm_eps)

        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.a_proj = nn.Linear(hidden_size, num_v_heads, bias=False)
        self.b_proj = nn.Linear(hidden_size, num_v_heads, bias=False)
        # fla's initialisation: A ~ U(0, 16), dt log-uniform in [1e-3, 0.1] stored through softplus's inverse
        self.A_log = nn.Parameter(torch.log(torch.empty(num_v_heads, dtype=torch.float32).uniform_(0, 16)))
        dt = torch.exp(torch.rand(num_v_heads) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log._no_weight_decay = True
        self.dt_bias._no_weight_decay = True
        self.add_short_convs(use_short_conv, conv_size, conv_bias, (self.key_dim, self.key_dim, self.value_dim))
        if use_gate:
            self.g_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
            self.o_norm = FusedRMSNormGated(self.head_v_dim, eps=norm_eps, activation=output_gate_activation)
        else:
            self.o_norm = RMSNorm(self.head_v_dim, eps=norm_eps, dtype=torch.float32)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)
        self.add_head_gates(hidden_size, num_v_heads)  # SLA: softmax over the value heads

    def mix(self, step: Step):
        q, k, v, windows = self.project_qkv(step, act=F.silu)
        q, k = q.unflatten(-1, (-1, self.head_k_dim)), k.unflatten(-1, (-1, self.head_k_dim))
        v = v.unflatten(-1, (-1, self.head_v_dim))
        if not self.spec.qk_l2norm:  # a user's delta spec without the in-kernel L2 norm
            q, k = F.normalize(q, dim=-1, eps=1e-6), F.normalize(k, dim=-1, eps=1e-6)
        x = step.x
        if self.spec.delta_gate == "mamba" and step.cp_context is None:
            # the kernels form g = -exp(A_log) softplus(a + dt_bias) and beta = sigmoid(b) where they load them
            gate = dict(g=self.a_proj(x), beta=self.b_proj(x), A_log=self.A_log, dt_bias=self.dt_bias)
        else:  # a spec taking g and beta themselves (a package's gdn), or context parallelism
            g = -torch.exp(self.A_log.float()) * F.softplus(self.a_proj(x).float() + self.dt_bias.float())
            gate = dict(g=g, beta=torch.sigmoid(self.b_proj(x).float()))
        o, state = self.attend(step, q, k, v, self.o_norm, **gate)
        gate = self.g_proj(x).unflatten(-1, (-1, self.head_v_dim)) if self.use_gate else None
        o = self.norm_and_gate(o, self.o_norm, gate, self.gate_fn, fused=True)
        return self.o_proj(o.flatten(-2)), dict(recurrent_state=state, conv_state=windows)
