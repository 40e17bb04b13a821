"""The gated-family comparisons on CUDA in bf16 and fp16 (skipped without a GPU). The reference runs in
float64 on the very (rounded) inputs the kernels get."""

from __future__ import annotations

import json

import pytest
import torch

from gated_helpers import VARIANTS, assert_close, compiled, inputs, reference

pytestmark = pytest.mark.gpu
TOL = {torch.bfloat16: 2e-2, torch.float16: 5e-3}
CONFIGS = [dict(chunk_size=64, algorithm="two_pass"), dict(chunk_size=32, algorithm="one_pass", block_k=32)]


def upcast(ker: dict) -> dict:
    return {k: (x.cpu().double() if x.is_floating_point() else x.cpu()) for k, x in ker.items()}


@pytest.mark.parametrize("config", range(len(CONFIGS)))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", VARIANTS)
def test_chunked_and_recurrent_on_gpu(name, dtype, config):
    ker, _ = inputs(name, 2, 300, 4, seed=11, dtype=dtype, device="cuda")
    op = compiled(name, json.dumps(CONFIGS[config], sort_keys=True))
    want = reference(name, upcast(ker))
    assert_close(op(**ker, output_final_state=True), want, TOL[dtype])
    assert_close(op.recurrent(**ker, output_final_state=True), want, TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", VARIANTS)
def test_varlen_on_gpu(name, dtype):
    ker, _ = inputs(name, 1, None, 4, seed=12, seqlens=[100, 1, 250, 77], dtype=dtype, device="cuda")
    op = compiled(name)
    assert_close(op(**ker, output_final_state=True), reference(name, upcast(ker)), TOL[dtype])
