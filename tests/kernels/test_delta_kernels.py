"""Gated DeltaNet kernels (chunked WY forward, recurrent/decode) against `slagen.reference`.

Interpreter tests run the rendered kernels (both forward algorithms, parallel and one_pass) on CPU tensors
in fp32 against the float64 reference, on tiny shapes: T not a multiple of the chunk, K != V, varlen (an
empty sequence included), initial state, split calls and decode chained token by token. `gpu` tests
repeat a few in bf16 on CUDA.
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
SPECS = {
    "gdn": dataclasses.replace(BUILTIN_SPECS["gdn"], **SMALL),
    "sla_gdn": dataclasses.replace(BUILTIN_SPECS["sla_gdn"], **SMALL),
    # write gate folded into beta, read gate without a norm, tempered softmax
    "sla_gdn_both": dataclasses.replace(BUILTIN_SPECS["sla_gdn"], name="sla_gdn_both", head_gate="both",
                                        output_norm="none", gate_temperature=2.0, **SMALL),
}


@functools.lru_cache(maxsize=None)
def compiled(name: str, chunk_size: int = 16, block_v: int = 16, algorithm: str = "parallel"):
    return slagen.compile(SPECS[name], {"chunk_size": chunk_size, "block_v": block_v, "algorithm": algorithm},
                          recurrent_config={"block_v": block_v})


def check(got, want, tol=2e-5):
    (o, st), (ro, rst) = got, want
    assert rel_err(o, ro) < tol
    assert rel_err(st, rst) < tol


def case(name, B=2, T=45, H=2, seed=0, **kw):
    spec = SPECS[name]
    inp = make_inputs(spec, B, T, H, seed=seed, **kw)
    return spec, inp, attention(spec, **inp, output_final_state=True)


@pytest.mark.interpreter
@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("chunk_size, algorithm", [(16, "parallel"), (32, "parallel"), (64, "parallel"),
                                                   (16, "one_pass"), (64, "one_pass")])
def test_chunked_matches_reference(name, chunk_size, algorithm):
    _, inp, want = case(name, B=1 if chunk_size == 64 else 2, T=37 if chunk_size < 64 else 70,
                        with_initial_state=True, seed=chunk_size)
    check(compiled(name, chunk_size, algorithm=algorithm)(**fp32(inp), output_final_state=True), want)


@pytest.mark.interpreter
@pytest.mark.parametrize("name", sorted(SPECS))
def test_recurrent_matches_reference(name):
    _, inp, want = case(name, T=13, with_initial_state=True, seed=3)
    check(compiled(name).recurrent(**fp32(inp), output_final_state=True), want)


@pytest.mark.interpreter
@pytest.mark.parametrize("dims", [dict(head_dim_v=48), dict(head_dim_k=24, head_dim_v=20)], ids=["split_v", "odd"])
def test_value_blocks_and_odd_dims(dims):
    """block_v < V (programs share the triangular solve, write disjoint columns); dims that are not powers
    of two (masked K and V)."""
    spec = dataclasses.replace(SPECS["sla_gdn_both"], name="gdn_dims", **dims)
    inp = make_inputs(spec, 1, 21, 2, seed=5, with_initial_state=True)
    want = attention(spec, **inp, output_final_state=True)
    op = slagen.compile(spec, {"chunk_size": 16, "block_v": 16}, recurrent_config={"block_v": 16})
    check(op(**fp32(inp), output_final_state=True), want)
    check(op.recurrent(**fp32(inp), output_final_state=True), want)


@pytest.mark.interpreter
@pytest.mark.parametrize("name, algorithm", [("gdn", "parallel"), ("sla_gdn_both", "parallel"),
                                             ("sla_gdn_both", "one_pass")])
def test_varlen_with_initial_state(name, algorithm):
    _, inp, want = case(name, B=1, T=None, H=2, seqlens=[7, 0, 21, 3], with_initial_state=True, seed=11)
    check(compiled(name, algorithm=algorithm)(**fp32(inp), output_final_state=True), want)
    check(compiled(name).recurrent(**fp32(inp), output_final_state=True), want)


@pytest.mark.interpreter
def test_split_call_equals_one_call():
    _, inp, _ = case("sla_gdn", B=1, T=40, with_initial_state=True, seed=2)
    inp = fp32(inp)
    op = compiled("sla_gdn")
    o, state = op(**inp, output_final_state=True)
    cut = 23  # not a chunk boundary
    head = {n: (x[:, :cut].contiguous() if x.dim() >= 3 and n != "initial_state" else x) for n, x in inp.items()}
    tail = {n: (x[:, cut:].contiguous() if x.dim() >= 3 and n != "initial_state" else x) for n, x in inp.items()}
    o1, s1 = op(**head, output_final_state=True)
    tail["initial_state"] = s1
    o2, s2 = op(**tail, output_final_state=True)
    assert rel_err(torch.cat([o1, o2], dim=1), o) < 2e-6
    assert rel_err(s2, state) < 2e-6


@pytest.mark.interpreter
def test_decode_token_by_token_equals_chunked():
    _, inp, _ = case("sla_gdn_both", B=1, T=9, H=2, with_initial_state=True, seed=4)
    inp = fp32(inp)
    op = compiled("sla_gdn_both")
    o, state = op(**inp, output_final_state=True)
    carried, outs = inp["initial_state"], []
    for t in range(9):
        step = {n: (x[:, t:t + 1].contiguous() if x.dim() >= 3 and n != "initial_state" else x)
                for n, x in inp.items()}
        step["initial_state"] = carried
        o_t, carried = op.recurrent(**step, output_final_state=True)
        outs.append(o_t)
    assert rel_err(torch.cat(outs, dim=1), o) < 2e-6
    assert rel_err(carried, state) < 2e-6


@pytest.mark.interpreter
def test_no_final_state_and_no_initial_state():
    _, inp, want = case("gdn", B=1, T=19, seed=6)
    o, st = compiled("gdn")(**fp32(inp))
    assert st is None
    assert rel_err(o, want[0]) < 2e-5


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
@pytest.mark.parametrize("name", ["gdn", "sla_gdn"])
@pytest.mark.parametrize("chunk_size", [16, 32, 64])
def test_gpu_bf16_matches_reference(name, chunk_size):
    spec = dataclasses.replace(BUILTIN_SPECS[name], head_dim_k=128, head_dim_v=128)
    inp = make_inputs(spec, 2, 300, 4, seed=1, with_initial_state=True)
    want = attention(spec, **inp, output_final_state=True)
    op = slagen.compile(spec, {"chunk_size": chunk_size})
    o, st = op(**cuda(inp), output_final_state=True)
    assert rel_err(o, want[0]) < 2e-2 and rel_err(st, want[1]) < 2e-2
    o, st = op.recurrent(**cuda(inp), output_final_state=True)
    assert rel_err(o, want[0]) < 2e-2 and rel_err(st, want[1]) < 2e-2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_varlen_bf16():
    spec = dataclasses.replace(BUILTIN_SPECS["gdn"], head_dim_k=64, head_dim_v=128)
    inp = make_inputs(spec, 1, None, 4, seed=2, seqlens=[1, 130, 0, 77], with_initial_state=True)
    want = attention(spec, **inp, output_final_state=True)
    o, st = slagen.compile(spec)(**cuda(inp), output_final_state=True)
    assert rel_err(o, want[0]) < 2e-2 and rel_err(st, want[1]) < 2e-2
