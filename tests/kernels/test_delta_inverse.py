"""The parallel delta forward's blockwise triangular inverse (I + A)^-1 (16 x 16 diagonal blocks by forward
substitution, then merged by products of N = Di L) against float64 torch.linalg.inv, on the strictly lower
A = beta K K^T e^{b_t - b_i} of correlated unit keys, at every chunk size; and why its merge products stay IEEE
fp32: the same merges with bf16-rounded operands miss the inverse by orders of magnitude more."""

from __future__ import annotations

import functools

import pytest
import torch
import triton
import triton.language as tl

from slagen.codegen import lower, render
from slagen.runtime.loader import load_source
from slagen.spec import BUILTIN_SPECS

pytestmark = pytest.mark.interpreter


@functools.cache
def forward_module():
    plan = lower(BUILTIN_SPECS["gdn"])["forward"]
    return load_source(render(plan, plan.validate_config({"algorithm": "parallel"}, partial=True)))


def blockwise_inverse(b_A, BT, BC, MERGE):  # replaced by the rendered module's jit function (interpreter only)
    raise NotImplementedError


@triton.jit
def inverse_kernel(a, out, BT: tl.constexpr, MERGE: tl.constexpr):
    o = tl.arange(0, BT)
    p = o[:, None] * BT + o[None, :]
    tl.store(out + p, blockwise_inverse(tl.load(a + p), BT, 16, MERGE))


def strictly_lower_system(BT: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(1, 32, generator=gen, dtype=torch.float64) + 0.5 * torch.randn(BT, 32, generator=gen,
                                                                                   dtype=torch.float64)
    k = k / k.norm(dim=-1, keepdim=True)
    beta = torch.rand(BT, generator=gen, dtype=torch.float64)
    b = torch.cumsum(-0.1 * torch.rand(BT, generator=gen, dtype=torch.float64), 0)
    return torch.tril(beta[:, None] * (k @ k.T) * torch.exp(b[:, None] - b[None, :]), -1)


def inverse_error(BT: int, merge: str, monkeypatch) -> float:
    monkeypatch.setitem(globals(), "blockwise_inverse", forward_module().blockwise_triangular_inverse)
    A = strictly_lower_system(BT, seed=BT)
    out = torch.empty(BT, BT)
    inverse_kernel[(1,)](A.float().contiguous(), out, BT=BT, MERGE=merge)
    want = torch.linalg.inv(torch.eye(BT, dtype=torch.float64) + A)
    return ((out.double() - want).norm() / want.norm()).item()


@pytest.mark.parametrize("BT", [16, 32, 64])
def test_blockwise_inverse_matches_torch(BT, monkeypatch):
    assert inverse_error(BT, "fp32", monkeypatch) < 1e-5


def test_merge_products_need_fp32(monkeypatch):
    assert inverse_error(64, "bf16_fp32", monkeypatch) > 1e-3 > 100 * inverse_error(64, "fp32", monkeypatch)
