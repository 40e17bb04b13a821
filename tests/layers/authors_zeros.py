"""The ZeroS authors' layer (SequenceLab `src/sequencelab/layers/zeros.py`, class `ZeroSAttention(config)`),
restated for the tests because their package is not installable here: the same parameters and buffers
(`q, k, v, u, gate, out_proj, prior_mu, prior_log_tau`; `cos`, `sin`, `bias`), the same forward on its
associative path with the "deviation" logits, their RoPE table and the per-head LayerNorm."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn


def _half_turn(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class AuthorsZeroS(nn.Module):
    def __init__(self, config: SimpleNamespace) -> None:
        super().__init__()
        D, H = config.n_embd, config.n_head
        self.H, self.d = H, D // H
        for name in ("q", "k", "v", "u"):
            setattr(self, name, nn.Linear(D, D, bias=config.bias))
        self.gate = nn.Linear(D, 3 * H, bias=config.bias)
        self.out_proj = nn.Linear(D, D, bias=config.bias)
        inv = 1.0 / (10000.0 ** (torch.arange(0, self.d, 2).float() / self.d))
        angles = torch.arange(config.block_size, dtype=torch.float32)[:, None] * inv[None]
        self.register_buffer("cos", angles.cos().repeat_interleave(2, -1)[None, :, None])
        self.register_buffer("sin", angles.sin().repeat_interleave(2, -1)[None, :, None])
        mask = torch.tril(torch.ones(config.block_size, config.block_size))
        self.register_buffer("bias", mask.view(1, 1, config.block_size, config.block_size).bool())
        self.norm = nn.LayerNorm(self.d, eps=1e-5, elementwise_affine=False)
        self.prior_mu = nn.Parameter(torch.zeros(1, 1, H, self.d))
        self.prior_log_tau = nn.Parameter(torch.zeros(1, 1, H, 1))

    def forward(self, x):
        B, L, D = x.shape
        q, k, v, u = (getattr(self, n)(x).view(B, L, self.H, self.d) for n in ("q", "k", "v", "u"))
        gate = self.gate(x).view(B, L, self.H, 3)
        t = torch.arange(1, L + 1, dtype=x.dtype).view(1, L, 1, 1)
        tau = torch.exp(self.prior_log_tau.clip(-50, 30))
        s = -(u * (tau * self.prior_mu + u.cumsum(1)) / (tau + t)).sum(-1, keepdim=True) / math.sqrt(self.d)
        cos, sin = self.cos[:, :L], self.sin[:, :L]
        q = F.normalize(q * cos + _half_turn(q) * sin, p=2, dim=-1)
        k = F.normalize(k * cos + _half_turn(k) * sin, p=2, dim=-1)
        e = torch.exp(s - s.max(dim=1, keepdim=True)[0].detach())
        kv = torch.einsum("blhd,blhe->blhde", k, v)
        Fs, Gs, Hs = ((w.unsqueeze(-1) * kv).cumsum(1) for w in (e, s, torch.ones_like(s)))
        s1, sh = torch.sigmoid(gate[..., [0]]), torch.sigmoid(gate[..., [1]])
        alpha = sh / (e.cumsum(1) + 1e-12)
        beta = (s1 - sh) / t
        gamma = -((beta * s.cumsum(1) + sh) / t)
        core = alpha.unsqueeze(-1) * Fs + beta.unsqueeze(-1) * Gs + gamma.unsqueeze(-1) * Hs
        out = self.norm(torch.einsum("blhd,blhde->blhe", q, core))
        return self.out_proj(out.reshape(B, L, D))
