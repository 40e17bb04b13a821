"""ZeroS kernels (chunked forward, recurrent/decode), plain and decayed, against `slagen.reference`.

fp32 kernels under the interpreter against the float64 reference on tiny shapes (K = 32, V = 16):
T not a multiple of the chunk, initial state (a state the reference produced, so E~, P, m, n agree),
varlen (positions reset per sequence and continue from the carried count), split calls, decode chained
token by token, the fused RMSNorm + read gate. `gpu` tests repeat a few in bf16 on CUDA.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

import slagen
from delta_bwd_helpers import fp32
from gated_helpers import rel_rms as rel_err
from slagen.reference import attention, make_inputs
from slagen.spec import BUILTIN_SPECS

SMALL = dict(head_dim_k=32, head_dim_v=16)
SPECS = {name: dataclasses.replace(BUILTIN_SPECS[name], **SMALL)
         for name in ("zeros", "zeros_retnet", "zeros_mamba2", "zeros_gla")}
SPECS["sla_zeros"] = dataclasses.replace(SPECS["zeros"], name="sla_zeros", head_gate="read", output_norm="rms",
                                         gate_scale="heads")
SPECS["zeros_mamba2_state"] = dataclasses.replace(SPECS["zeros_mamba2"], name="zeros_mamba2_state",
                                                  zero_sum_decay="state")


@functools.lru_cache(maxsize=None)
def compiled(name: str, chunk_size: int = 16, block_v: int = 16):
    return slagen.compile(SPECS[name], {"chunk_size": chunk_size, "block_v": block_v},
                          recurrent_config={"block_v": block_v})


def check(got, want, tol=2e-5):
    (o, (kv, stats)), (ro, (rkv, rstats)) = got, want
    assert rel_err(o, ro) < tol
    assert rel_err(kv, rkv) < tol
    assert rel_err(stats, rstats) < tol


def case(name, B=2, T=37, H=2, seed=0, **kw):
    spec = SPECS[name]
    inp = make_inputs(spec, B, T, H, seed=seed, **kw)
    return spec, inp, attention(spec, **inp, output_final_state=True)


def sliced(inp: dict, t0: int, t1: int) -> dict:
    return {n: (x[:, t0:t1].contiguous() if n != "initial_state" and x.dim() >= 3 else x) for n, x in inp.items()}


@pytest.mark.interpreter
@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("chunk_size", [16, 64])
def test_chunked_matches_reference(name, chunk_size):
    _, inp, want = case(name, B=2 if chunk_size == 16 else 1, T=37 if chunk_size == 16 else 70,
                        with_initial_state=True, seed=chunk_size)
    check(compiled(name, chunk_size)(**fp32(inp), output_final_state=True), want)


@pytest.mark.interpreter
@pytest.mark.parametrize("name", sorted(SPECS))
def test_recurrent_matches_reference(name):
    _, inp, want = case(name, T=11, with_initial_state=True, seed=3)
    check(compiled(name).recurrent(**fp32(inp), output_final_state=True), want)


@pytest.mark.interpreter
@pytest.mark.parametrize("name", ["zeros", "zeros_mamba2", "zeros_gla"])
def test_varlen_positions_reset_and_continue(name):
    """Each sequence restarts at t = 1 (or continues from its carried count n), never a chunk-local index."""
    _, inp, want = case(name, B=1, T=None, seqlens=[5, 0, 22, 9], with_initial_state=True, seed=11)
    check(compiled(name)(**fp32(inp), output_final_state=True), want)
    _, inp, want = case(name, B=1, T=None, seqlens=[3, 20], seed=12)  # empty states: n = 0, m = -inf
    check(compiled(name)(**fp32(inp), output_final_state=True), want)


@pytest.mark.interpreter
@pytest.mark.parametrize("dims", [dict(head_dim_v=48), dict(head_dim_k=24, head_dim_v=20)], ids=["split_v", "odd"])
def test_value_blocks_and_odd_dims(dims):
    """block_v < V (every V block writes its states, block 0 the statistics); masked K and V."""
    spec = dataclasses.replace(SPECS["zeros_retnet"], name="zeros_retnet_dims", **dims)
    inp = make_inputs(spec, 1, 21, 2, seed=5, with_initial_state=True)
    want = attention(spec, **inp, output_final_state=True)
    op = slagen.compile(spec, {"chunk_size": 16, "block_v": 16}, recurrent_config={"block_v": 16})
    check(op(**fp32(inp), output_final_state=True), want)
    check(op.recurrent(**fp32(inp), output_final_state=True), want)


@pytest.mark.interpreter
@pytest.mark.parametrize("name", ["zeros", "zeros_retnet"])
def test_split_call_equals_one_call(name):
    _, inp, _ = case(name, B=1, T=40, with_initial_state=True, seed=2)
    inp = fp32(inp)
    op = compiled(name)
    o, (kv, stats) = op(**inp, output_final_state=True)
    o1, carried = op(**sliced(inp, 0, 23), output_final_state=True)
    o2, (kv2, stats2) = op(**dict(sliced(inp, 23, 40), initial_state=carried), output_final_state=True)
    assert rel_err(torch.cat([o1, o2], dim=1), o) < 2e-6
    assert rel_err(kv2, kv) < 2e-6 and rel_err(stats2, stats) < 2e-6


@pytest.mark.interpreter
@pytest.mark.parametrize("name", ["sla_zeros", "zeros_mamba2"])
def test_decode_token_by_token_equals_chunked(name):
    _, inp, _ = case(name, B=1, T=9, with_initial_state=True, seed=4)
    inp = fp32(inp)
    op = compiled(name)
    o, (kv, stats) = op(**inp, output_final_state=True)
    carried, outs = inp["initial_state"], []
    for t in range(9):
        o_t, carried = op.recurrent(**dict(sliced(inp, t, t + 1), initial_state=carried), output_final_state=True)
        outs.append(o_t)
    assert (torch.cat(outs, dim=1) - o).abs().max() < 1e-5
    assert rel_err(carried[0], kv) < 2e-6 and rel_err(carried[1], stats) < 2e-6


# --- CUDA (bf16) -----------------------------------------------------------------------------------------

def cuda(inputs: dict, dtype=torch.bfloat16) -> dict:
    def move(name, x):
        if isinstance(x, tuple):
            return tuple(t.float().cuda() for t in x)
        if not x.is_floating_point():
            return x.cuda()
        return x.to(dtype).cuda() if name in ("q", "k", "v", "norm_weight") else x.float().cuda()
    return {name: move(name, x) for name, x in inputs.items()}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["zeros", "zeros_retnet", "zeros_mamba2", "zeros_gla"])
def test_gpu_bf16_matches_reference(name):
    spec = BUILTIN_SPECS[name]
    inp = make_inputs(spec, 2, 300, 4, seed=1, with_initial_state=True)
    want = attention(spec, **inp, output_final_state=True)
    op = slagen.compile(spec)
    for fn in (op, op.recurrent):
        o, (kv, stats) = fn(**cuda(inp), output_final_state=True)
        assert rel_err(o, want[0]) < 3e-2
        assert rel_err(kv, want[1][0]) < 3e-2 and rel_err(stats, want[1][1]) < 3e-2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_varlen_bf16():
    spec = BUILTIN_SPECS["zeros"]
    inp = make_inputs(spec, 1, None, 4, seed=2, seqlens=[1, 130, 0, 77], with_initial_state=True)
    want = attention(spec, **inp, output_final_state=True)
    o, (kv, stats) = slagen.compile(spec)(**cuda(inp), output_final_state=True)
    assert rel_err(o, want[0]) < 3e-2 and rel_err(kv, want[1][0]) < 3e-2
