"""The `states` backward plan axis of the delta (Gated DeltaNet) and zeros (ZeroS) families: with "store" the
forward keeps its per-chunk states (h [NT, H, K, V]; ZeroS's pair kv [NT, H, 3, K, V], stats [NT, H, 4]) and
the backward reads them instead of launching its state pass. Gradients against float64 autograd of
`slagen.reference` (GDN with both SLA gates and the RMSNorm; ZeroS with scalar decay and the consistent
measure) for forward chunkings that agree and disagree with the backward's, varlen, an initial state; a count
of state-pass launches that proves the pass is skipped (and is not under "recompute" or after the recurrent
forward); the states the forward hands over against the final state of a forward over each prefix; a refusal
of states of another chunking; the torch custom ops (fake shapes, torch.compile) and a generated package that
keeps ZeroS's pair. fp32 kernels on CPU tensors under the interpreter.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

import slagen
from gated_bwd_helpers import Launches
from delta_bwd_helpers import assert_grads_close, autograd_grads, fp32, parts, reference_grads, rel_rms
from slagen.reference import make_inputs
from slagen.spec import BUILTIN_SPECS

pytestmark = pytest.mark.interpreter
SMALL = {"head_dim_k": 32, "head_dim_v": 16}
SPECS = {
    # both head gates (write gate folded into beta, read gate after the fused RMSNorm)
    "sla_gdn_both": dataclasses.replace(BUILTIN_SPECS["sla_gdn"], name="sla_gdn_both", head_gate="both", **SMALL),
    # scalar decay, "consistent" measure decay
    "zeros_mamba2": dataclasses.replace(BUILTIN_SPECS["zeros_mamba2"], **SMALL),
}
STATE_PASS = {"sla_gdn_both": "delta_chunk_recurrence", "zeros_mamba2": "zeros_chunk_states"}
FORWARD_KERNEL = {"sla_gdn_both": "delta_chunk_forward", "zeros_mamba2": "zeros_chunk_forward"}
# launches of FORWARD_KERNEL when the forward's chunking agrees with the backward's / does not: the delta
# forward's default (parallel) hands over its recurrence's states and walks the states with the one-pass
# kernel only at another chunking; ZeroS's one kernel writes o and the states, then walks them again
FORWARD_LAUNCHES = {"sla_gdn_both": (0, 1), "zeros_mamba2": (1, 2)}
BWD_CHUNK = 16
TOL = {"sla_gdn_both": 1e-5, "zeros_mamba2": 2e-5}


@functools.cache
def op_for(name: str, forward_chunk: int, states: str = "store"):
    """A compiled op whose backward chunks by 16 and keeps (or recomputes) the states; its forward chunks by
    `forward_chunk`."""
    return slagen.compile(SPECS[name], {"chunk_size": forward_chunk, "block_v": 16}, recurrent_config={"block_v": 16},
                          backward_config={"chunk_size": BWD_CHUNK, "block_v": 16, "states": states})


def scale_of(name: str) -> float:
    spec = SPECS[name]
    return 1.0 if spec.zero_sum else spec.head_dim_k ** -0.5



def count(monkeypatch, fn, kernel: str) -> Launches:
    """Count the launches of `kernel` in the module of the launcher `fn`."""
    names = fn.__globals__
    launches = Launches(names[kernel])
    monkeypatch.setitem(names, kernel, launches)
    return launches


@pytest.mark.parametrize("forward_chunk", [16, 32], ids=["same_chunk", "other_chunk"])
@pytest.mark.parametrize("name", list(SPECS))
def test_stored_states_gradients_match_reference(monkeypatch, name, forward_chunk):
    """With an initial state and a final-state gradient; T = 37 is not a multiple of either chunk."""
    spec = SPECS[name]
    inp = make_inputs(spec, 2, 37, 2, seed=41 + forward_chunk, with_initial_state=True)
    want, do, dht = reference_grads(spec, inp)
    op = op_for(name, forward_chunk)
    assert op.states_chunk == BWD_CHUNK
    state_pass = count(monkeypatch, op.backward_fn, STATE_PASS[name])
    forward = count(monkeypatch, op.forward_fn, FORWARD_KERNEL[name])
    assert_grads_close(spec, autograd_grads(op, spec, inp, do, dht), want, TOL[name])
    assert state_pass.count == 0, "the store backward re-ran its state pass"
    # the forward's chunking agrees: one launch writes o and the states; else a second one walks the states
    assert forward.count == FORWARD_LAUNCHES[name][forward_chunk != BWD_CHUNK]


@pytest.mark.parametrize("name", list(SPECS))
def test_stored_states_varlen(monkeypatch, name):
    """Sequences of 7, 0 (empty), 21 and 3 tokens with their own initial states; the forward chunks by 32."""
    spec = SPECS[name]
    inp = make_inputs(spec, 1, None, 2, seed=43, seqlens=[7, 0, 21, 3], with_initial_state=True)
    want, do, dht = reference_grads(spec, inp)
    op = op_for(name, 32)
    state_pass = count(monkeypatch, op.backward_fn, STATE_PASS[name])
    assert_grads_close(spec, autograd_grads(op, spec, inp, do, dht), want, TOL[name])
    assert state_pass.count == 0


@pytest.mark.parametrize("path", ["recompute", "recurrent_forward"])
@pytest.mark.parametrize("name", list(SPECS))
def test_state_pass_runs_without_stored_states(monkeypatch, name, path):
    """The counter sees the pass when nothing is stored: a recompute backward, or a store backward behind the
    recurrent forward (which has no chunk states to hand over)."""
    spec = SPECS[name]
    inp = make_inputs(spec, 1, 21, 2, seed=44, with_initial_state=True)
    want, do, dht = reference_grads(spec, inp)
    op = op_for(name, 16, "recompute" if path == "recompute" else "store")
    assert op.states_chunk == (None if path == "recompute" else BWD_CHUNK)
    state_pass = count(monkeypatch, op.backward_fn, STATE_PASS[name])
    got = autograd_grads(op, spec, inp, do, dht, recurrent=path == "recurrent_forward")
    assert_grads_close(spec, got, want, TOL[name])
    assert state_pass.count == 1


@pytest.mark.parametrize("name", list(SPECS))
def test_forward_returns_states_at_the_asked_chunking(name):
    """`forward(..., save_states_chunk=16)` gives the same states whether the forward chunks by 16 (the output
    pass writes them) or by 32 (a second, states-only launch); row 0 of each sequence is the initial state and
    row c the final state of a forward over the first 16 c tokens; o and the final state are unchanged."""
    spec = SPECS[name]
    inp = fp32(make_inputs(spec, 2, 37, 2, seed=45, with_initial_state=True))
    scale = scale_of(name)
    o, final = op_for(name, 16).forward_fn(**inp, scale=scale, output_final_state=True)
    same = op_for(name, 16).forward_fn(**inp, scale=scale, output_final_state=True, save_states_chunk=16)
    other = op_for(name, 32).forward_fn(**inp, scale=scale, output_final_state=True, save_states_chunk=16)
    assert len(same) == 3 and len(other) == 3
    want_shapes = [(6, 2, 32, 16)] if not spec.zero_sum else [(6, 2, 3, 32, 16), (6, 2, 4)]
    assert [tuple(p.shape) for p in parts(same[2])] == want_shapes
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in parts(same[2]))
    torch.testing.assert_close(same[0], o, rtol=0, atol=0)
    for got, ref in zip(parts(same[1]), parts(final)):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    for got, ref in zip(parts(other[2]), parts(same[2])):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    rows = [p.view(2, 3, *p.shape[1:]) for p in parts(same[2])]  # [B, chunks of 16, ...]
    for row, h0 in zip(rows, parts(inp["initial_state"])):
        torch.testing.assert_close(row[:, 0], h0, rtol=0, atol=0)
    for c in (1, 2):
        prefix = {n: (x[:, :16 * c].contiguous() if n != "initial_state" and x.dim() >= 3 else x)
                  for n, x in inp.items()}
        _, state = op_for(name, 16).forward_fn(**prefix, scale=scale, output_final_state=True)
        for row, want in zip(rows, parts(state)):
            assert rel_rms(row[:, c], want) < 1e-5, c
    assert len(op_for(name, 32).forward_fn(**inp, scale=scale)) == 2  # the convention without save_states_chunk


@pytest.mark.parametrize("name", list(SPECS))
def test_backward_rejects_states_of_another_chunking(name):
    spec = SPECS[name]
    inp = fp32(make_inputs(spec, 1, 37, 2, seed=46))
    op = op_for(name, 32)
    scale = scale_of(name)
    _, _, states = op.forward_fn(**inp, scale=scale, save_states_chunk=32)  # 2 chunks; the backward's 16 make 3
    do = torch.randn(1, 37, 2, 16, generator=torch.Generator().manual_seed(0))
    if spec.zero_sum:
        pattern = r"states\[0\]: expected contiguous float32 \[3, 2, 3, 32, 16\].* \[2, 2, 3, 32, 16\]"
    else:
        pattern = r"states: expected contiguous float32 \[3, 2, 32, 16\].* \[2, 2, 32, 16\]"
    with pytest.raises(ValueError, match=pattern):
        op.backward_fn(**inp, scale=scale, do=do, states=states)
    if spec.zero_sum:
        with pytest.raises(ValueError, match=r"states: expected a tuple of 2 tensors"):
            op.backward_fn(**inp, scale=scale, do=do, states=states[0])


@pytest.mark.parametrize("name", list(SPECS))
def test_compiled_function_keeps_states(monkeypatch, name):
    """torch.compile(fullgraph=True) of a loss over the op: the forward custom op returns the states (their
    fake shapes match, or dynamo would fail) and its backward reads them; gradients match the reference."""
    spec = SPECS[name]
    inp = make_inputs(spec, 1, 37, 2, seed=47, with_initial_state=True)
    want, do, dht = reference_grads(spec, inp)
    op = op_for(name, 32)
    state_pass = count(monkeypatch, op.backward_fn, STATE_PASS[name])
    leaves = {n: (tuple(fp32(p).requires_grad_() for p in x) if isinstance(x, tuple) else fp32(x).requires_grad_())
              for n, x in inp.items() if n != "g_gamma"}
    call = {**fp32(inp), **leaves}

    def loss(call):
        o, final = op(**call, output_final_state=True)
        total = (o.double() * do).sum()
        return total + sum((p.double() * d).sum() for p, d in zip(parts(final), parts(dht)))

    torch._dynamo.reset()
    torch.compile(loss, fullgraph=True)(call).backward()
    got = {n: (tuple(p.grad for p in x) if isinstance(x, tuple) else x.grad) for n, x in leaves.items()}
    assert_grads_close(spec, got, want, TOL[name])
    assert state_pass.count == 0


@pytest.mark.parametrize("name", list(SPECS))
def test_opcheck_forward_op_with_stored_states(name):
    spec = SPECS[name]
    inp = fp32(make_inputs(spec, 1, 9, 2, seed=48, with_initial_state=True))
    op = op_for(name, 16).custom_ops["forward"]
    names = ("g", "g_gamma", "beta", "read_logits", "write_logits", "zs_logits", "zs_gate1", "zs_gateh",
             "norm_weight", "A_log", "dt_bias")
    args = (inp["q"], inp["k"], inp["v"], *(inp.get(n) for n in names), parts(inp["initial_state"]), None,
            scale_of(name), True)
    args = tuple(a.requires_grad_() if isinstance(a, torch.Tensor) and a.is_floating_point() else
                 ([s.requires_grad_() for s in a] if isinstance(a, list) else a) for a in args)
    _, _, states = op.forward_op(*args)
    assert [tuple(s.shape) for s in states] == ([(1, 2, 32, 16)] if not spec.zero_sum else
                                                [(1, 2, 3, 32, 16), (1, 2, 4)])
    torch.testing.assert_close(states[0], parts(inp["initial_state"])[0])
    torch.library.opcheck(op.forward_op, args,
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def test_generated_package_keeps_zeros_states(monkeypatch, tmp_path):
    """A package whose ZeroS backward configs all store: its custom ops are registered to keep the (kv, stats)
    pair, and its autograd call hands the pair to the backward."""
    from slagen import api
    from slagen.codegen.families import zeros

    plan_of = zeros.backward_plan
    monkeypatch.setattr(zeros, "backward_plan", lambda spec, *args, **kwargs: dataclasses.replace(
        plan_of(spec, *args, **kwargs), default={**plan_of(spec, *args, **kwargs).default, "chunk_size": 16,
                                                 "block_v": 16, "states": "store"}))
    name = "zeros_mamba2"
    spec = SPECS[name]
    api.build([spec], out_dir=str(tmp_path), name="pkg_zeros_store")
    package = api.import_package(str(tmp_path / "pkg_zeros_store"))
    runtime = package._PACKAGE
    assert runtime._shared_states_chunk(name) == 16  # what its torch custom ops were registered with
    inp = make_inputs(spec, 1, 21, 2, seed=49, with_initial_state=True)
    want, do, dht = reference_grads(spec, inp)
    module = runtime.module(name, runtime.choose(name, "backward", fp32(inp["q"])))
    assert module.SAVES_STATES and module.CHUNK_SIZE == 16
    launches = Launches(module.zeros_chunk_states)
    monkeypatch.setattr(module, "zeros_chunk_states", launches)
    assert_grads_close(spec, autograd_grads(getattr(package, name), spec, inp, do, dht), want, TOL[name])
    assert launches.count == 0
