"""The delta backward's `epilogue_input` plan axis: with "saved" (the default for specs with an RMSNorm or a read
gate) a training forward stores o_raw, its output before the epilogue, and the backward's epilogue reads it
instead of recomputing o from the chunk states h and v_new ("recompute"). Outputs, final states and every
gradient against float64 autograd of the naive reference for both settings, both backward algorithms and a
one_pass forward feeding the parallel backward; launch records that show an inference forward writes no o_raw,
a training forward saves exactly one more tensor, and the saved-path backward reads no h or v_new for its
epilogue. fp32 kernels on CPU tensors under the interpreter (fp16 / bf16: test_delta_low_precision.py).
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

import slagen
from delta_bwd_helpers import assert_grads_close, autograd_grads, fp32, leaf_names, reference_grads, rel_rms
from slagen.codegen import lower
from slagen.codegen.plan import ConfigError
from slagen.reference import attention, make_inputs
from slagen.spec import BUILTIN_SPECS

pytestmark = pytest.mark.interpreter
SMALL = dict(head_dim_k=32, head_dim_v=16)
SPECS = {
    "sla_gdn": dataclasses.replace(BUILTIN_SPECS["sla_gdn"], **SMALL),  # RMSNorm + read gate
    # read gate without a norm: o_raw in two V blocks
    "sla_gdn_read": dataclasses.replace(BUILTIN_SPECS["sla_gdn"], name="sla_gdn_read", output_norm="none",
                                        head_dim_k=32, head_dim_v=32),
}
TOL = 1e-5


@functools.cache
def op_for(name: str, epilogue_input: str, algorithm: str = "parallel", forward_algorithm: str = "parallel"):
    return slagen.compile(SPECS[name], {"chunk_size": 16, "block_v": 16, "algorithm": forward_algorithm},
                          recurrent_config={"block_v": 16},
                          backward_config={"chunk_size": 16, "block_v": 16, "algorithm": algorithm,
                                           "epilogue_input": epilogue_input})


class Recorder:
    """Stands in for a module's @triton.jit kernel: records each launch's arguments, then runs it."""

    def __init__(self, kernel) -> None:
        self.kernel, self.calls = kernel, []

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            names = self.kernel.arg_names
            self.calls.append({**dict(zip(names, args)), **kwargs})
            return self.kernel[grid](*args, **kwargs)
        return run


def record(monkeypatch, fn, kernel: str) -> Recorder:
    names = fn.__globals__
    recorder = Recorder(names[kernel])
    monkeypatch.setitem(names, kernel, recorder)
    return recorder


@pytest.mark.parametrize("name, epilogue_input, algorithm, forward_algorithm", [
    ("sla_gdn", "recompute", "parallel", "parallel"), ("sla_gdn", "saved", "one_pass", "parallel"),
    ("sla_gdn", "saved", "parallel", "one_pass"), ("sla_gdn_read", "saved", "parallel", "parallel")])
def test_gradients_match_reference(name, epilogue_input, algorithm, forward_algorithm):
    """Output, final state and every gradient (initial state and final-state gradient included; T = 27 is not
    a multiple of the chunk) through the compiled op's autograd. The default (saved, parallel) is
    test_delta_backward.py's test_autograd_through_compiled_op; the one_pass backward's recompute path is its
    module tests (the backward called without o_raw)."""
    spec = SPECS[name]
    inp = make_inputs(spec, 1, 27, 2, seed=13, with_initial_state=True)
    want, do, dht = reference_grads(spec, inp)
    op = op_for(name, epilogue_input, algorithm, forward_algorithm)
    assert op.saves_output == (epilogue_input == "saved")
    o_ref, state_ref = attention(spec, **inp, output_final_state=True, method="naive")
    with torch.no_grad():
        o, state = op(**fp32(inp), output_final_state=True)
    assert rel_rms(o, o_ref) < TOL and rel_rms(state, state_ref) < TOL
    assert_grads_close(spec, autograd_grads(op, spec, inp, do, dht), want, TOL)


@pytest.mark.parametrize("forward_algorithm, kernel", [("parallel", "delta_chunk_output"),
                                                       ("one_pass", "delta_chunk_forward")])
def test_only_a_training_forward_keeps_raw_output(monkeypatch, forward_algorithm, kernel):
    """No grad (torch.no_grad, or no input requiring grad): the output kernel gets no o_raw. Under autograd it
    stores one, autograd saves exactly one tensor more than with "recompute" (o_raw, in o's shape and dtype), and
    the backward's epilogue reads it with neither h nor v_new passed."""
    spec = SPECS["sla_gdn"]
    inp = fp32(make_inputs(spec, 1, 21, 2, seed=17, with_initial_state=True))
    op = op_for("sla_gdn", "saved", forward_algorithm=forward_algorithm)
    launches = record(monkeypatch, op.forward_fn, kernel)
    with torch.no_grad():
        op(**inp)
    op(**inp)  # nothing requires grad
    assert [c["o_raw"] is None and not c["STORE_RAW"] for c in launches.calls] == [True, True]

    def saved_tensors(op):
        saved = []
        leaves = {n: x.clone().requires_grad_(n in leaf_names(inp)) for n, x in inp.items()}
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            o, _ = op(**leaves)
        return o, saved

    launches.calls.clear()
    o, saved = saved_tensors(op)
    assert len(launches.calls) == 1 and launches.calls[0]["STORE_RAW"]
    raw = launches.calls[0]["o_raw"]
    assert raw.shape == o.shape and raw.dtype == o.dtype
    _, saved_recompute = saved_tensors(op_for("sla_gdn", "recompute", forward_algorithm=forward_algorithm))
    assert len(saved) == len(saved_recompute) + 1 and any(t is raw for t in saved)

    dv_local = record(monkeypatch, op.backward_fn, "delta_bwd_dv_local")
    o.sum().backward()
    call, = dv_local.calls
    assert call["SAVED_OUTPUT"] and call["o_raw"] is raw and call["h"] is None and call["u"] is None


def test_refusals():
    """A spec without an epilogue has only "recompute"; a backward refuses an o_raw of another shape."""
    gdn = dataclasses.replace(BUILTIN_SPECS["gdn"], **SMALL)
    with pytest.raises(ConfigError, match=r"config\.epilogue_input: expected one of \['recompute'\], got 'saved'"):
        lower(gdn)["backward"].validate_config({"epilogue_input": "saved"}, partial=True)
    spec = SPECS["sla_gdn"]
    inp = fp32(make_inputs(spec, 1, 21, 2, seed=19))
    do = torch.randn_like(inp["v"])
    with pytest.raises(ValueError, match=r"o_raw: expected contiguous torch.float32 \[1, 21, 2, 16\]"):
        op_for("sla_gdn", "saved").backward_fn(**inp, scale=1.0, do=do, o_raw=do[:, :20].contiguous())


def test_generated_package_keeps_raw_output(monkeypatch, tmp_path):
    """A generated package's autograd call hands its forward's o_raw to the backward (default "saved")."""
    from slagen import api

    spec = dataclasses.replace(SPECS["sla_gdn"], name="sla_gdn_pkg", chunk_size=16)
    api.build([spec], out_dir=str(tmp_path), name="pkg_raw_output")
    package = api.import_package(str(tmp_path / "pkg_raw_output"))
    runtime = package._PACKAGE
    inp = make_inputs(spec, 1, 21, 2, seed=23, with_initial_state=True)
    want, do, dht = reference_grads(spec, inp)
    module = runtime.module(spec.name, runtime.choose(spec.name, "backward", fp32(inp["q"])))
    assert module.SAVES_OUTPUT
    dv_local = record(monkeypatch, module.backward, "delta_bwd_dv_local")
    assert_grads_close(spec, autograd_grads(getattr(package, spec.name), spec, inp, do, dht), want, TOL)
    assert [c["SAVED_OUTPUT"] and c["o_raw"] is not None for c in dv_local.calls] == [True]
