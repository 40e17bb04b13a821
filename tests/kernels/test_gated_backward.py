"""Gated-family backward (linear, RetNet, Mamba2, GLA, with SLA gates) against float64 autograd of
`slagen.reference`: every differentiable input (q, k, v, g, gate logits, norm weight, initial state), with a
final-state gradient coming in, T not a multiple of the chunk, two backward configs, varlen == a loop over
sequences, a sequence split in two calls, the recurrent forward, bf16 inputs.
fp32 kernels on CPU tensors under the interpreter.
"""

from __future__ import annotations

import json

import pytest
import torch

from gated_bwd_helpers import (assert_grads_close, compiled_bwd, grad_case, incoming, kernel_grads, leaves, loss,
                               reference_grads)
from gated_helpers import EXTRA, VARIANTS, inputs, reference, rel_rms, small_spec

pytestmark = pytest.mark.interpreter
TOL = 1e-4
BACKWARD = {
    "c16_b16": dict(chunk_size=16, block_k=16, block_v=16),  # two K blocks (K = 32): partial dg sums
    "c32": dict(chunk_size=32, block_k=32, block_v=16),
}
L2NORM_C16 = json.dumps(dict(BACKWARD["c16_b16"], block_k=32), sort_keys=True)  # the qk L2 norm: block_k = K


def cfg(name: str) -> str:
    return json.dumps(BACKWARD[name], sort_keys=True)


def _shape(name: str) -> tuple[int, int, int]:
    # GLA's column-wise intra-chunk gradients are slow under the interpreter: smaller problems
    return (1, 37, 2) if "gla" in name else (2, 37, 3)


@pytest.mark.parametrize("config", list(BACKWARD))
@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_match_reference(name, config):
    B, T, H = _shape(name)
    ker, want, do, dht = grad_case(name, B, T, H, seed=21)
    op = compiled_bwd(name, cfg(config))
    assert_grads_close(kernel_grads(op, ker, do, dht), want, TOL)


@pytest.mark.parametrize("name", tuple(EXTRA))
def test_gradients_extra_specs(name):
    """Write gate, both gates (tempered), qk L2 norm, dims that are not powers of two."""
    B, T, H = _shape(name)
    ker, want, do, dht = grad_case(name, B, T, H, seed=22)
    config = L2NORM_C16 if small_spec(name).qk_l2norm else cfg("c16_b16")
    assert_grads_close(kernel_grads(compiled_bwd(name, config), ker, do, dht), want, TOL)


def test_state_passes_run_narrower_tiles():
    """block_k = block_v = 128 over K = 128, V = 80: the state passes (forward and backward) run [64, 64] tiles,
    two per direction, the last V tile masked, under the output / dq dk / dv kernels' whole-row tiles."""
    name, config = "mamba2_wide", json.dumps(dict(chunk_size=16, block_k=128, block_v=128), sort_keys=True)
    op = compiled_bwd(name, config, config)
    ker, ref = inputs(name, 1, 37, 1, seed=23)
    o, state = op(**ker, output_final_state=True)
    want_o, want_state = reference(name, ref)
    assert rel_rms(o, want_o) < TOL and rel_rms(state, want_state) < TOL
    ker, want, do, dht = grad_case(name, 1, 37, 1, seed=23)
    assert_grads_close(kernel_grads(op, ker, do, dht), want, TOL)


@pytest.mark.parametrize("name", ["mamba2", "sla_gla"])
def test_recurrent_forward_is_differentiable(name):
    B, T, H = _shape(name)
    ker, want, do, dht = grad_case(name, B, T, H, seed=23)
    assert_grads_close(kernel_grads(compiled_bwd(name), ker, do, dht, recurrent=True), want, TOL)


@pytest.mark.parametrize("name", ["sla_mamba2", "sla_gla", "sla_retnet_both"])
def test_varlen_gradients_equal_loop_over_sequences(name):
    seqlens = [7, 1, 9] if "gla" in name else [13, 1, 20]
    ker, _ = leaves(*inputs(name, 1, None, 2, seed=24, seqlens=seqlens))
    op = compiled_bwd(name, cfg("c16_b16"))
    o, state = op(**ker, output_final_state=True)
    gen = torch.Generator().manual_seed(5)
    do, dht = torch.randn(o.shape, generator=gen), torch.randn(state.shape, generator=gen)
    loss(o, state, do, dht).backward()
    bounds = ker["cu_seqlens"].tolist()
    for i, (t0, t1) in enumerate(zip(bounds[:-1], bounds[1:])):
        part = {}
        for k, x in ker.items():
            if k == "cu_seqlens":
                continue
            if k == "initial_state":
                part[k] = x.detach()[i:i + 1].clone().requires_grad_()
            elif x.dim() >= 3:
                part[k] = x.detach()[:, t0:t1].clone().requires_grad_()
            else:
                part[k] = x.detach().clone().requires_grad_(x.requires_grad)
        o_i, s_i = op(**part, output_final_state=True)
        loss(o_i, s_i, do[:, t0:t1], dht[i:i + 1]).backward()
        for k, x in part.items():
            if not x.requires_grad:
                continue
            full = ker[k].grad
            if k == "initial_state":
                full = full[i:i + 1]
            elif x.dim() >= 3:
                full = full[:, t0:t1]
            if x.dim() < 3 and k != "initial_state":  # norm_weight: summed over sequences, checked below
                continue
            assert rel_rms(full, x.grad) < TOL, f"{k} of sequence {i}"
    # parameters shared by all sequences: the varlen gradient is the sum of the per-sequence ones
    # (checked against the reference, which is itself a loop over sequences)
    _, ref = leaves(*inputs(name, 1, None, 2, seed=24, seqlens=seqlens))
    want, _, _ = reference_grads(name, ref, do.double(), dht.double())
    for k in ("norm_weight",):
        if k in want:
            assert rel_rms(ker[k].grad, want[k]) < TOL


@pytest.mark.parametrize("name", ["mamba2", "sla_gla"])
def test_split_sequence_carries_gradient_through_state(name):
    """Two calls with the state carried (final_state -> initial_state) == one call, gradients included."""
    B, T, H = _shape(name)
    T0 = 21
    ker, want, do, dht = grad_case(name, B, T, H, seed=25)
    op = compiled_bwd(name, cfg("c16_b16"))

    def part(t0, t1):
        return {k: x[:, t0:t1].contiguous() if x.dim() >= 3 else x for k, x in ker.items() if k != "initial_state"}

    o1, s1 = op(**part(0, T0), initial_state=ker["initial_state"], output_final_state=True)
    o2, s2 = op(**part(T0, T), initial_state=s1, output_final_state=True)
    loss(torch.cat([o1, o2], dim=1), s2, do, dht).backward()
    got = {k: x.grad for k, x in ker.items() if isinstance(x, torch.Tensor) and x.requires_grad}
    assert_grads_close(got, want, TOL)


@pytest.mark.parametrize("used", ["output_only", "state_only"])
def test_unused_outputs_get_no_gradient(used):
    """No final state returned (dht is None), or only the final state used (do is None)."""
    name = "sla_mamba2"
    ker, ref = leaves(*inputs(name, 1, 20, 2, seed=29))
    o_r, s_r = reference(name, ref)
    do, dht = incoming(o_r, s_r)
    if used == "output_only":
        (o_r * do).sum().backward()
        o, _ = compiled_bwd(name)(**ker)
        (o.double() * do).sum().backward()
    else:
        (s_r * dht).sum().backward()
        _, s = compiled_bwd(name)(**ker, output_final_state=True)
        (s.double() * dht).sum().backward()
    for k, x in ref.items():
        if isinstance(x, torch.Tensor) and x.requires_grad:
            if x.grad is None:  # q, the read gate and the norm do not reach the state
                assert not ker[k].grad.any(), k
            else:
                assert rel_rms(ker[k].grad, x.grad) < TOL, k


def test_bf16_inputs_give_bf16_grads():
    name = "sla_mamba2"
    ker, ref = inputs(name, 1, 20, 2, seed=26, dtype=torch.bfloat16)
    ker, ref = leaves(ker, ref)
    want, do, dht = reference_grads(name, ref)
    got = kernel_grads(compiled_bwd(name), ker, do, dht)
    for k, x in ker.items():
        if isinstance(x, torch.Tensor) and x.requires_grad:
            assert got[k].dtype == x.dtype, k
            assert rel_rms(got[k], want[k]) < 3e-2, k


def test_no_grad_inputs_skip_autograd():
    """Without requires_grad the plain launcher runs (no graph); the backward plan changes nothing."""
    ker, _ = inputs("retnet", 1, 20, 2, seed=27)
    o, _ = compiled_bwd("retnet")(**ker)
    assert o.grad_fn is None


def test_grads_named_by_the_backward_module():
    op = compiled_bwd("sla_gla")
    assert op.grads == ("q", "k", "v", "g", "read_logits", "norm_weight", "initial_state")
    assert compiled_bwd("retnet").grads == ("q", "k", "v", "initial_state")
    assert small_spec("retnet").decay == "fixed"  # g_gamma is a constant: never differentiated


def test_generated_package_is_differentiable(tmp_path):
    """A built runtime package ships the backward kernels and routes calls that need grads through autograd."""
    from slagen import api

    name = "sla_mamba2"
    api.build([small_spec(name)], out_dir=str(tmp_path), name="pkg_bwd")
    package = api.import_package(str(tmp_path / "pkg_bwd"))
    ker, want, do, dht = grad_case(name, 1, 20, 2, seed=28)
    got = kernel_grads(getattr(package, name), ker, do, dht)
    assert_grads_close(got, want, TOL)
