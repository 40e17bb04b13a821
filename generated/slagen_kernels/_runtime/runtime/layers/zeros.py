"""`ZeroSAttention` with the ZeroS authors' parameterisation (their SequenceLab `layers/zeros.py`): projections
`q, k, v, u` and `gate` (σ¹, σʰ, σ⁰ per head), `out_proj`, the "deviation" logits
`s_t = -u_t · ū_t / sqrt(d)` against a running mean smoothed by a learned prior (`prior_mu`, `prior_log_tau`),
their RoPE on q and k, unit-norm q and k, and a per-head LayerNorm without affine on the output.

The cache keeps the kernel's state (three K×V states, running max, sums and the token count) and the running
sum of u per head, so decoding continues the logits and positions exactly."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import FlaLayer, Step, refuse
from .padding import segment_cumsum, sequence_index, token_positions
from .parts import rotary_zeros


class ZeroSAttention(FlaLayer):
    MODES = ("chunk", "fused_recurrent")
    CONTEXT_PARALLEL = False  # RoPE positions and the running mean of u would need the ranks before this one

    def __init__(self, hidden_size: int = 1024, num_heads: int = 8, bias: bool = True, dropout: float = 0.0,
                 use_norm: bool = True, rope_base: float = 10000.0, is_causal: bool = True,
                 use_associative: bool = True, is_first_layer: bool = False, init_params: bool = False,
                 init_n_layers: int = 12, block_size: Optional[int] = None, mode: str = "chunk",
                 layer_idx: Optional[int] = None, **kwargs) -> None:
        super().__init__()
        self.check_mode(mode)
        if hidden_size % num_heads:
            raise refuse("num_heads", num_heads, f"a divisor of hidden_size = {hidden_size}")
        for argument, value, wanted in (("is_causal", is_causal, True), ("use_associative", use_associative, True),
                                        ("is_first_layer", is_first_layer, False)):
            if value is not wanted and value != wanted:
                why = {"is_causal": "causal attention only",
                       "use_associative": "the associative form (the authors' fallback computes another function)",
                       "is_first_layer": "no zero-order term in slagen's kernels"}[argument]
                raise refuse(argument, value, f"{wanted} ({why})")
        self.hidden_size, self.num_heads, self.head_dim = hidden_size, num_heads, hidden_size // num_heads
        self.use_norm, self.rope_base, self.block_size, self.layer_idx = use_norm, rope_base, block_size, layer_idx
        self.bind_kernels(self.head_dim, self.head_dim, 1e-5)
        if self.spec.head_gate != "none" or self.spec.decay != "none":
            raise refuse("kernels", self.spec.name, "a ZeroS spec without decay or head gate for ZeroSAttention")
        D, H, d = hidden_size, num_heads, self.head_dim
        self.q = nn.Linear(D, D, bias=bias)
        self.k = nn.Linear(D, D, bias=bias)
        self.v = nn.Linear(D, D, bias=bias)
        self.u = nn.Linear(D, D, bias=bias)
        self.gate = nn.Linear(D, 3 * H, bias=bias)
        self.out_proj = nn.Linear(D, D, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.prior_mu = nn.Parameter(torch.zeros(1, 1, H, d))
        self.prior_log_tau = nn.Parameter(torch.zeros(1, 1, H, 1))
        if init_params:  # GPT-2 style, as the authors' option
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
            nn.init.normal_(self.out_proj.weight, std=0.02 / math.sqrt(2 * init_n_layers))

    def logits(self, step: Step, u: torch.Tensor, positions: torch.Tensor, u_sum: torch.Tensor):
        """Deviation logits `[.., H]` and each sequence's new running sum of u."""
        seq = None if step.cu_seqlens is None else sequence_index(step.cu_seqlens, u.shape[1])[0]
        carried = u_sum[:, None] if seq is None else u_sum[seq][None]
        u_cum = segment_cumsum(u, step.cu_seqlens) + carried
        tau = torch.exp(self.prior_log_tau.float().clip(-50, 30))
        t = (positions + 1).to(u.dtype)[..., None, None]
        mean = (tau * self.prior_mu.float() + u_cum) / (tau + t)
        s = -(u * mean).sum(-1) / math.sqrt(self.head_dim)
        if not step.use_cache:
            return s, None
        if seq is None:
            return s, (u_cum[:, -1] if u.shape[1] else u_sum)
        last = (step.cu_seqlens[1:] - 1).clamp(min=0)
        filled = (step.cu_seqlens[1:] > step.cu_seqlens[:-1]).view(-1, 1, 1)
        return s, torch.where(filled, u_cum[0, last], u_sum)

    def mix(self, step: Step):
        x, H, d = step.x, self.num_heads, self.head_dim
        B, T = x.shape[:2]
        q, k, v = (proj(x).unflatten(-1, (H, d)) for proj in (self.q, self.k, self.v))
        u = self.u(x).unflatten(-1, (H, d)).float()
        gate = self.gate(x).unflatten(-1, (H, 3)).float()
        rows = B if step.cu_seqlens is None else step.cu_seqlens.numel() - 1
        carried = step.last.get("recurrent_state") if step.last is not None else None
        if carried is None:
            seen = torch.zeros(rows, dtype=torch.long, device=x.device)
            u_sum = torch.zeros(rows, H, d, dtype=torch.float32, device=x.device)
            initial = None
        else:
            kv, stats, u_sum = carried
            seen, initial = stats[:, 0, 3].round().long(), (kv, stats)
        positions = token_positions(B, T, step.cu_seqlens, seen, x.device)
        s, u_sum = self.logits(step, u, positions, u_sum)
        q = F.normalize(rotary_zeros(q, positions, self.rope_base), p=2, dim=-1)
        k = F.normalize(rotary_zeros(k, positions, self.rope_base), p=2, dim=-1)
        o, state = self.attend(step, q, k, v, initial_state=initial, zs_logits=s,
                               zs_gate1=torch.sigmoid(gate[..., 0]), zs_gateh=torch.sigmoid(gate[..., 1]))
        if self.use_norm:
            o = F.layer_norm(o, (d,), eps=1e-5)
        y = self.dropout(self.out_proj(o.flatten(-2)))
        return y, dict(recurrent_state=None if state is None else (state[0], state[1], u_sum))
