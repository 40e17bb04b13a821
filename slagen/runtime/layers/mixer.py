"""`TokenMixer`: an nn.Module around one variant, usable as a drop-in attention replacement.

Parametrisations (what a user of these models would expect):
- projections q, k (H*K) and v (H*V) from the hidden state, and o (H*V -> hidden);
- decay: `fixed` uses RetNet's `log(1 - 2^(-5-h))`; `scalar` and `delta` a per-head `logsigmoid(W x) / 16`
  (`delta_gate = "mamba"`: `-exp(A_log) softplus(W x + dt_bias)`, formed in the kernels);
  `vector` GLA's low-rank `logsigmoid(W2 W1 x) / 16`; `delta` adds `beta = sigmoid(W x)`;
- SLA gate logits: a per-head linear projection of x (`read` and/or `write`);
- ZeroS: logits `s_t = -u_t . mean_{i<=t}(u_i) / sqrt(K)` from a projection u (the paper's default),
  gates `sigmoid(W x)` for sigma^1 and sigma^h;
- the fused per-head RMSNorm weight when the spec asks for it.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

GATE_NORMALISER = 16.0  # GLA's choice: keeps initial decays close to 1


def _segment_cumsum(x: torch.Tensor, cu_seqlens: Optional[torch.Tensor]) -> torch.Tensor:
    """Cumulative sum over time ([B, T, ...]) that restarts at each sequence of cu_seqlens."""
    total = x.cumsum(1)
    if cu_seqlens is None:
        return total
    starts = cu_seqlens[:-1].long()
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    offsets = torch.zeros_like(total)
    for s, n in zip(starts.tolist(), lengths.tolist()):
        if s > 0:  # subtract the running total at the end of the previous sequence
            offsets[:, s:s + n] = total[:, s - 1:s]
    return total - offsets


def _positions(T: int, cu_seqlens: Optional[torch.Tensor], device: torch.device) -> torch.Tensor:
    """1-based position of each token within its own sequence, shape [T]."""
    pos = torch.arange(1, T + 1, device=device, dtype=torch.float32)
    if cu_seqlens is None:
        return pos
    for s, e in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist()):
        pos[s:e] -= s
    return pos


class TokenMixer(nn.Module):
    """Subclasses set `variant` (a name in `package.specs`) and `package` (a `KernelPackage`)."""

    variant: ClassVar[str]
    package: ClassVar[Any]

    def __init__(self, hidden_size: int, num_heads: int, *, device=None, dtype=None) -> None:
        super().__init__()
        spec = self.package.specs[self.variant]
        self.spec, self.hidden_size, self.num_heads = spec, hidden_size, num_heads
        H, K, V = num_heads, spec.head_dim_k, spec.head_dim_v
        kw = dict(bias=False, device=device, dtype=dtype)
        self.q_proj = nn.Linear(hidden_size, H * K, **kw)
        self.k_proj = nn.Linear(hidden_size, H * K, **kw)
        self.v_proj = nn.Linear(hidden_size, H * V, **kw)
        self.o_proj = nn.Linear(H * V, hidden_size, **kw)
        if spec.decay == "fixed":
            gamma = 1.0 - torch.pow(2.0, -5.0 - torch.arange(H, dtype=torch.float32))
            self.register_buffer("g_gamma", torch.log(gamma).to(device), persistent=False)
        elif spec.decay in ("scalar", "delta"):
            self.g_proj = nn.Linear(hidden_size, H, device=device, dtype=dtype)
        elif spec.decay == "vector":
            self.g_proj = nn.Sequential(nn.Linear(hidden_size, 16, **kw),
                                        nn.Linear(16, H * K, device=device, dtype=dtype))
        if spec.decay == "delta":
            self.beta_proj = nn.Linear(hidden_size, H, **kw)
        if spec.delta_gate == "mamba":  # g = -exp(A_log) softplus(g_proj(x) + dt_bias), in the kernels
            self.A_log = nn.Parameter(torch.zeros(H, device=device, dtype=torch.float32))
            self.dt_bias = nn.Parameter(torch.full((H,), -3.0, device=device, dtype=torch.float32))
        if spec.uses_read_gate:
            self.read_proj = nn.Linear(hidden_size, H, **kw)
        if spec.uses_write_gate:
            self.write_proj = nn.Linear(hidden_size, H, **kw)
        if spec.zero_sum:
            self.u_proj = nn.Linear(hidden_size, H * K, **kw)
            self.gate1_proj = nn.Linear(hidden_size, H, device=device, dtype=dtype)
            self.gateh_proj = nn.Linear(hidden_size, H, device=device, dtype=dtype)
        if spec.output_norm == "rms":
            self.norm_weight = nn.Parameter(torch.ones(V, device=device, dtype=dtype))

    def inputs(self, x: torch.Tensor, cu_seqlens: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """The kernel arguments computed from the hidden states x [B, T, hidden]."""
        spec, H = self.spec, self.num_heads
        B, T, _ = x.shape
        K, V = spec.head_dim_k, spec.head_dim_v
        args: dict[str, torch.Tensor] = {
            "q": self.q_proj(x).view(B, T, H, K).contiguous(),
            "k": self.k_proj(x).view(B, T, H, K).contiguous(),
            "v": self.v_proj(x).view(B, T, H, V).contiguous(),
        }
        if spec.decay == "fixed":
            args["g_gamma"] = self.g_gamma
        elif spec.decay in ("scalar", "delta"):
            args["g"] = (F.logsigmoid(self.g_proj(x).float()) / GATE_NORMALISER).contiguous()
        elif spec.decay == "vector":
            args["g"] = (F.logsigmoid(self.g_proj(x).float()) / GATE_NORMALISER).view(B, T, H, K).contiguous()
        if spec.decay == "delta":
            args["beta"] = torch.sigmoid(self.beta_proj(x).float()).contiguous()
        if spec.delta_gate == "mamba":  # the gate's input and beta's logits; the kernels apply the gate
            args["g"], args["beta"] = self.g_proj(x).float().contiguous(), self.beta_proj(x).float().contiguous()
            args["A_log"], args["dt_bias"] = self.A_log, self.dt_bias
        if spec.uses_read_gate:
            args["read_logits"] = self.read_proj(x).float().contiguous()
        if spec.uses_write_gate:
            args["write_logits"] = self.write_proj(x).float().contiguous()
        if spec.zero_sum:
            u = self.u_proj(x).float().view(B, T, H, K)
            mean = _segment_cumsum(u, cu_seqlens) / _positions(T, cu_seqlens, x.device).view(1, T, 1, 1)
            args["zs_logits"] = (-(u * mean).sum(-1) / math.sqrt(K)).contiguous()
            args["zs_gate1"] = torch.sigmoid(self.gate1_proj(x).float()).contiguous()
            args["zs_gateh"] = torch.sigmoid(self.gateh_proj(x).float()).contiguous()
        if spec.output_norm == "rms":
            args["norm_weight"] = self.norm_weight
        return args

    def forward(self, x: torch.Tensor, initial_state: Any = None, output_final_state: bool = False,
                cu_seqlens: Optional[torch.Tensor] = None):
        args = self.inputs(x, cu_seqlens)
        q, k, v = args.pop("q"), args.pop("k"), args.pop("v")
        o, state = self.package.call(self.variant, "forward", q, k, v, initial_state=initial_state,
                                     output_final_state=output_final_state, cu_seqlens=cu_seqlens, **args)
        B, T = x.shape[:2]
        return self.o_proj(o.reshape(B, T, -1)), state
