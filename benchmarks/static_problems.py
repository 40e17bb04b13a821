"""The problems `static_vs_fla.py` compares: each op's slagen spec and inputs, and the calls that run one
forward and one backward through slagen's autograd op or fla-core's function (on meta tensors to record
launches, on small CPU tensors under the interpreter to count MMA FLOPs)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

FLA_OPS = ("linear", "retnet", "mamba2", "gla", "gdn")  # with an fla counterpart (linear: simple_gla, no gate)
# SLA forms and ZeroS have no fla counterpart: each is compared with its base variant (slagen both sides),
# against issue 17's targets (bytes touched at most TARGETS[op]x the base's; SLA: same launches and host ops)
BASES = {"sla_linear": "linear", "sla_retnet": "retnet", "sla_mamba2": "mamba2", "sla_gla": "gla", "sla_gdn": "gdn",
         "zeros": "linear"}
TARGETS = {op: 3.0 if op == "zeros" else 1.05 for op in BASES}
OPS = FLA_OPS + tuple(BASES)

def problem(name: str, B: int, T: int, H: int, D: int, dtype: torch.dtype, device: str) -> tuple[Any, dict]:
    """The slagen spec and its inputs (q, k, v in `dtype`, gates fp32, as `make_inputs` makes them)."""
    from slagen.reference.inputs import make_inputs
    from slagen.spec import BUILTIN_SPECS

    spec = BUILTIN_SPECS[name]
    if spec.head_dim_k != D or spec.head_dim_v != D:  # every op at the shape's head dims (ZeroS ships 64)
        spec = dataclasses.replace(spec, head_dim_k=D, head_dim_v=D)
    small = make_inputs(spec, 1, 4, 2, dtype=dtype)
    inputs = {}
    for key, t in small.items():
        # per head (g_gamma), per channel (norm_weight [V]) or per token
        shape = (H,) if key == "g_gamma" else tuple(t.shape) if t.dim() == 1 else (B, T, H, *t.shape[3:])
        if device == "meta":
            inputs[key] = torch.empty(shape, dtype=t.dtype, device="meta")
        else:  # small real inputs for the interpreter (values matter only as far as they stay finite)
            inputs[key] = make_inputs(spec, B, T, H, dtype=dtype)[key] if key != "g_gamma" else t.new_tensor(
                [-0.05] * H)
    return spec, inputs


def slagen_modules(spec: Any) -> tuple[Any, Any, str, str]:
    from slagen.codegen import lower, render
    from slagen.tuning.aot import import_compilable

    plans = lower(spec)
    sources = {op: render(plans[op], plans[op].validate_config(None, partial=True)) for op in ("forward", "backward")}
    return (import_compilable(sources["forward"]), import_compilable(sources["backward"]),
            sources["forward"], sources["backward"])


def loaded_slagen_modules(spec: Any) -> tuple[Any, Any]:
    """The same rendered modules imported the ordinary way (under the interpreter when it is on)."""
    from slagen.codegen import lower, render
    from slagen.runtime.loader import load_source

    plans = lower(spec)
    return tuple(load_source(render(plans[op], plans[op].validate_config(None, partial=True)))
                 for op in ("forward", "backward"))


def slagen_call(fwd: Any, bwd: Any, inputs: dict, scale: float):
    """slagen's autograd op over the two modules, as `slagen.runtime` runs it: (forward(), backward(),
    inference()); inference() is the forward the runtime runs when nothing requires grad (no autograd, so
    nothing saved for a backward)."""
    from slagen.runtime.autograd import Differentiable, apply, saves_raw_output, stored_states_chunk

    kernels = Differentiable(fwd.forward, bwd.backward, tuple(bwd.GRADS), stored_states_chunk(bwd),
                             saves_raw_output(bwd))
    state: dict = {}

    def forward():
        kwargs = {k: v for k, v in inputs.items() if k not in ("q", "k", "v")}
        state["o"], _ = apply(kernels, inputs["q"], inputs["k"], inputs["v"],
                              dict(kwargs, scale=scale, output_final_state=False, initial_state=None,
                                   cu_seqlens=None))

    def backward():
        state["o"].backward(torch.ones_like(state["o"]) if state["o"].device.type != "meta"
                            else torch.empty_like(state["o"]))

    def inference():
        kwargs = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        with torch.no_grad():
            fwd.forward(kwargs.pop("q"), kwargs.pop("k"), kwargs.pop("v"), **kwargs, scale=scale,
                        output_final_state=False, initial_state=None, cu_seqlens=None)

    return forward, backward, inference


def fla_call(name: str, fns: dict, inputs: dict, scale: float):
    x = dict(inputs)
    state: dict = {}
    if "beta" in x:  # as fla's GatedDeltaNet layer passes it (and slagen's bench mapping)
        x["beta"] = x["beta"].detach().to(x["q"].dtype).requires_grad_(x["beta"].requires_grad)

    def forward():
        if name == "linear":  # linear attention is simple_gla without a decay
            o, _ = fns["simple_gla"](x["q"], x["k"], x["v"], scale=scale)
        elif name in ("retnet", "mamba2"):
            o, _ = fns["simple_gla"](x["q"], x["k"], x["v"], g=x.get("g"), g_gamma=x.get("g_gamma"), scale=scale)
        elif name == "gla":
            o, _ = fns["gla"](x["q"], x["k"], x["v"], g=x["g"], scale=scale)
        else:
            o, _ = fns["gated_delta_rule"](x["q"], x["k"], x["v"], g=x["g"], beta=x["beta"], scale=scale,
                                           use_qk_l2norm_in_kernel=True)
        state["o"] = o

    def backward():
        state["o"].backward(torch.ones_like(state["o"]) if state["o"].device.type != "meta"
                            else torch.empty_like(state["o"]))

    def inference():
        with torch.no_grad():
            forward()

    return forward, backward, inference


def leaves(inputs: dict) -> dict:
    return {k: (v.requires_grad_(True) if v.dim() >= 3 and v.is_floating_point() else v) for k, v in inputs.items()}
