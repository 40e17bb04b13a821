"""The small modules fla's layers are built from, in PyTorch, with fla 0.6's parameter names and shapes:
`ShortConvolution` (a depthwise causal `nn.Conv1d`: `weight [D, 1, W]`, optional `bias`), `RMSNorm` and
`FusedRMSNormGated` (`weight [D]` or none), the learnable `HadamardFeatureMap`, and the two RoPE forms
(fla's `RotaryEmbedding` and the ZeroS authors' table)."""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

GATE_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "swish": F.silu, "silu": F.silu, "sigmoid": torch.sigmoid,
}


def activation(argument: str, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name not in GATE_ACTIVATIONS:
        raise ValueError(f"{argument}: expected one of {sorted(GATE_ACTIVATIONS)}, got {name!r}")
    return GATE_ACTIVATIONS[name]


class ShortConvolution(nn.Conv1d):
    """Depthwise causal convolution over time with a SiLU; `forward(x [B, T, D], cache=None,
    output_final_state=False, cu_seqlens=None) -> (y, cache)`, the cache being the last `W` inputs `[N, D, W]`
    of each sequence (fla's layout)."""

    def __init__(self, hidden_size: int, kernel_size: int, bias: bool = False, activation: Optional[str] = "silu",
                 device=None, dtype=None, **_: object) -> None:
        super().__init__(hidden_size, hidden_size, kernel_size, groups=hidden_size, padding=kernel_size - 1,
                         bias=bias, device=device, dtype=dtype)
        if activation not in (None, "silu", "swish"):
            raise ValueError(f"activation: expected 'silu', 'swish' or None, got {activation!r}")
        self.activation = activation

    def _run(self, x: torch.Tensor, cache: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch of independent sequences: x [N, T, D], cache [N, D, W] or None."""
        N, T, D = x.shape
        W = self.kernel_size[0]
        prev = cache[..., 1:].to(x.dtype) if cache is not None else x.new_zeros(N, D, W - 1)
        full = torch.cat([prev, x.transpose(1, 2)], -1)  # [N, D, W - 1 + T]
        y = F.conv1d(full, self.weight, self.bias, groups=D).transpose(1, 2)
        if self.activation is not None:
            y = F.silu(y)
        last = full[..., -W:] if full.shape[-1] >= W else F.pad(full, (W - full.shape[-1], 0))
        return y, last

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, cache: Optional[torch.Tensor] = None,
                output_final_state: bool = False, cu_seqlens: Optional[torch.Tensor] = None,
                **_: object) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if mask is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)
        if cu_seqlens is None:
            y, last = self._run(x, cache)
        else:
            outs, lasts = [], []
            for i, (s, e) in enumerate(zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist())):
                y_i, last_i = self._run(x[:, s:e], cache[i:i + 1] if cache is not None else None)
                outs.append(y_i)
                lasts.append(last_i)
            y, last = torch.cat(outs, 1), torch.cat(lasts, 0)
        return y, (last if output_final_state else None)


class RMSNorm(nn.Module):
    """fla's `RMSNorm` over the last dim (fp32 inside): `weight [D]` unless `elementwise_affine=False`."""

    def __init__(self, hidden_size: int, elementwise_affine: bool = True, eps: float = 1e-5, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.hidden_size, self.eps = hidden_size, eps
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype)) if elementwise_affine else None

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float() * torch.rsqrt(x.float().square().mean(-1, keepdim=True) + self.eps)
        if self.weight is not None:
            y = y * self.weight.float()
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x).to(x.dtype)


class FusedRMSNormGated(RMSNorm):
    """fla's `FusedRMSNormGated`: `forward(x, g) = RMSNorm(x) * act(g)`."""

    def __init__(self, hidden_size: int, elementwise_affine: bool = True, eps: float = 1e-5,
                 activation: str = "swish", device=None, dtype=None) -> None:
        super().__init__(hidden_size, elementwise_affine, eps, device, dtype)
        self.activation = activation
        self.gate_fn = GATE_ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (self.normalize(x) * self.gate_fn(g.float())).to(x.dtype)


class HadamardFeatureMap(nn.Module):
    """fla's `elementwise_product` feature map: `layer1(x) * layer2(x)`."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.layer1 = nn.Linear(head_dim, head_dim)
        self.layer2 = nn.Linear(head_dim, head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(x) * self.layer2(x)


def _angles(positions: torch.Tensor, dim: int, base: float) -> torch.Tensor:
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim))
    return positions.float().unsqueeze(-1) * inv_freq  # [B, T, dim / 2]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """fla's `RotaryEmbedding` (GPT-NeoX halves) on `x [B, T, H, D]` at `positions [B, T]`."""
    angles = _angles(positions, x.shape[-1], base)
    cos, sin = (torch.cat([f(angles)] * 2, -1).unsqueeze(2) for f in (torch.cos, torch.sin))
    return (x.float() * cos + _rotate_half(x.float()) * sin).to(x.dtype)


def rotary_zeros(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """The ZeroS authors' RoPE: each angle repeated twice in place (c0, c0, c1, c1, ...) while the rotation
    pairs the two halves; matched as it is, so that their checkpoints keep their meaning."""
    angles = _angles(positions, x.shape[-1], base)
    cos, sin = (f(angles).repeat_interleave(2, dim=-1).unsqueeze(2) for f in (torch.cos, torch.sin))
    return (x.float() * cos + _rotate_half(x.float()) * sin).to(x.dtype)
