"""`slagen.cp` in one process (a gloo group of one): the context's checks, each a one-line error naming the
argument, and the generated package's functions taking `cp_context` (with one rank the call is the plain
call, gradients included; grouped value heads there). The algorithm across ranks is `test_cp.py`."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.distributed as dist

import slagen
from slagen.codegen.package import VariantBuild, build_package
from slagen.reference import make_inputs
from slagen.runtime.loader import import_file
from slagen.spec import BUILTIN_SPECS

RETNET = dataclasses.replace(BUILTIN_SPECS["retnet"], head_dim_k=16, head_dim_v=16)


def test_context_needs_an_initialised_group():
    if dist.is_initialized():
        pytest.skip("a process group is already up in this process")
    with pytest.raises(ValueError, match="^group: torch.distributed is not initialised"):
        slagen.cp.context()


@pytest.mark.parametrize("cu, message", [
    (torch.tensor([0, 4, 4, 8]), "cu_seqlens: expected strictly increasing offsets from 0"),
    (torch.tensor([1, 8]), "cu_seqlens: expected strictly increasing offsets from 0"),
    (torch.tensor([0, 8], dtype=torch.int32), r"cu_seqlens: expected None or an int64 tensor \[N \+ 1\]"),
    ([0, 8], "cu_seqlens: expected None or an int64 tensor"),
])
def test_context_refuses_bad_cu_seqlens(group, cu, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        slagen.cp.context(group, cu)


def test_context_slices_and_ending_sequences(group):
    ctx = slagen.cp.context(group, torch.tensor([0, 3, 8]))
    assert ctx.ending_sequences(8) == (0, 1)
    with pytest.raises(ValueError, match=r"^cu_seqlens: the context's sequences end at 8 tokens, expected"):
        ctx.slices(6)
    two = dataclasses.replace(ctx, world_size=2, bounds=((0, 3), (3, 10), (10, 16)))
    first, second = two.slices(8)
    assert first.segments == ((0, 0, 3), (1, 3, 8)) and not first.continues and first.passes_on
    assert second.segments == ((1, 0, 2), (2, 2, 8)) and second.continues and not second.passes_on
    assert not first.passthrough and not second.passthrough


def _inputs(T=8, **kw):
    x = make_inputs(RETNET, 1, T, 2, dtype=torch.float32, seed=3, with_initial_state=True, **kw)
    return {k: (v.float() if v.is_floating_point() else v) for k, v in x.items()}


@pytest.mark.parametrize("change, message", [
    (dict(cp_context="ctx"), "^cp_context: expected a context from slagen.cp.context"),
    (dict(cu_seqlens=torch.tensor([0, 8])), "^cu_seqlens: expected None under cp_context"),
    (dict(initial_state=torch.zeros(2, 2, 16, 16)), r"^initial_state: expected 1 rows"),
    (dict(v=torch.zeros(1, 4, 2, 16)), r"^v: expected this rank's slice \[1, 8, HV, V\] under cp_context, got"),
])
def test_op_refuses_bad_cp_calls(group, change, message):
    op = slagen.compile(RETNET)
    x = dict(_inputs(), cp_context=slagen.cp.context(group))
    x.update(change)
    with pytest.raises(ValueError, match=message):
        op(**x)


def test_op_refuses_a_batch(group):
    x = make_inputs(RETNET, 2, 8, 2, dtype=torch.float32, seed=3)
    with pytest.raises(ValueError, match=r"^q: expected this rank's slice \[1, T_local, H, K\]"):
        slagen.compile(RETNET)(**{k: v.float() for k, v in x.items()}, cp_context=slagen.cp.context(group))


@pytest.mark.interpreter
def test_package_function_takes_cp_context(group, tmp_path):
    root = build_package([VariantBuild(RETNET)], tmp_path, "pkg_cp")
    pkg = import_file(root / "__init__.py", "pkg_cp", package=True)
    x = _inputs(seqlens=[3, 5], value_heads=4)  # grouped value heads: 2 per q/k head
    cu = x.pop("cu_seqlens")
    leaves = [{k: v.clone().requires_grad_(k != "g_gamma") for k, v in x.items()} for _ in range(2)]
    plain = pkg.retnet(**leaves[0], cu_seqlens=cu, output_final_state=True)
    split = pkg.retnet(**leaves[1], cp_context=slagen.cp.context(group, cu), output_final_state=True)
    gen = torch.Generator().manual_seed(0)
    do, dht = torch.randn(plain[0].shape, generator=gen), torch.randn(plain[1].shape, generator=gen)
    for (o, final), inputs in zip((plain, split), leaves):
        ((o * do).sum() + (final * dht).sum()).backward()
    torch.testing.assert_close(split[0], plain[0])
    torch.testing.assert_close(split[1], plain[1])
    for name in ("q", "k", "v", "initial_state"):
        torch.testing.assert_close(leaves[1][name].grad, leaves[0][name].grad, msg=name)
