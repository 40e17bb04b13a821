"""Gated-family gradients on CUDA in bf16 (skipped without a GPU): every differentiable input against float64
autograd of the reference on the very (rounded) inputs the kernels get, two backward configs, varlen, and
the full-size default configs (K = V = 128 built-ins) so the real Triton compiler sees every kernel."""

from __future__ import annotations

import json

import pytest
import torch

import slagen
from gated_bwd_helpers import compiled_bwd, kernel_grads, leaves, reference_grads
from gated_helpers import VARIANTS, inputs, rel_rms
from slagen.reference import make_inputs
from slagen.spec import BUILTIN_SPECS

pytestmark = pytest.mark.gpu
TOL = 3e-2
CONFIGS = [dict(chunk_size=64, block_k=32, block_v=16), dict(chunk_size=16, block_k=16, block_v=16)]


def _check(name, ker, op, **kwargs):
    ref = {k: (x.detach().cpu().double() if x.is_floating_point() else x.cpu()) for k, x in ker.items()}
    ker, ref = leaves(ker, ref)
    want, do, dht = reference_grads(name, ref, **kwargs)
    got = kernel_grads(op, ker, do.cuda(), dht.cuda())
    for k, x in ker.items():
        if isinstance(x, torch.Tensor) and x.requires_grad:
            assert got[k].dtype == x.dtype
            assert rel_rms(got[k], want[k]) < TOL, k


@pytest.mark.parametrize("config", range(len(CONFIGS)))
@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_bf16_on_gpu(name, config):
    ker, _ = inputs(name, 2, 300, 4, seed=31, dtype=torch.bfloat16, device="cuda")
    _check(name, ker, compiled_bwd(name, json.dumps(CONFIGS[config], sort_keys=True)))


@pytest.mark.parametrize("name", VARIANTS)
def test_varlen_gradients_bf16_on_gpu(name):
    ker, _ = inputs(name, 1, None, 4, seed=32, seqlens=[100, 1, 250, 77], dtype=torch.bfloat16, device="cuda")
    _check(name, ker, compiled_bwd(name))


@pytest.mark.parametrize("name", VARIANTS)
def test_full_size_default_backward_on_gpu(name):
    spec = BUILTIN_SPECS[name]
    op = slagen.compile(spec)
    ker = make_inputs(spec, 2, 512, 4, dtype=torch.bfloat16, device="cuda", with_initial_state=True,
                      requires_grad=True)
    o, state = op(**ker, output_final_state=True)
    (o.float().square().sum() + state.square().sum()).backward()
    for k, x in ker.items():
        if isinstance(x, torch.Tensor) and x.requires_grad and k != "g_gamma":
            assert x.grad is not None and torch.isfinite(x.grad).all(), k
