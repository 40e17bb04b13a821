"""Every refused input raises before launch, with a message that starts with the argument's name."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import slagen
from gated_helpers import compiled, inputs
from slagen.codegen import UnsupportedSpec
from slagen.spec import BUILTIN_SPECS


def call(name="sla_mamba2", **changes):
    ker, _ = inputs(name, 1, 20, 2, seed=0)
    for key, value in changes.items():
        if value is ...:
            ker.pop(key)
        else:
            ker[key] = value(ker) if callable(value) else value
    return compiled(name)(**ker)


CASES = {
    "q wrong rank": ("q", dict(q=lambda k: k["q"][0])),
    "k wrong shape": ("k", dict(k=lambda k: k["k"][:, :10].contiguous())),
    "v wrong head dim": ("v", dict(v=lambda k: torch.zeros(1, 20, 2, 8))),
    "q wrong head dim": ("q", dict(q=lambda k: torch.zeros(1, 20, 2, 16), k=lambda k: torch.zeros(1, 20, 2, 16))),
    "k dtype differs": ("k", dict(k=lambda k: k["k"].double())),
    "v dtype not in spec": ("v", dict(q=lambda k: k["q"].double(), k=lambda k: k["k"].double(),
                                      v=lambda k: k["v"].double())),
    # q, k, v, g, beta are read in place or copied once (test_gva_strided.py); the other inputs stay contiguous
    "read_logits non-contiguous": ("read_logits", dict(read_logits=lambda k: torch.stack([k["read_logits"]] * 2,
                                                                                        -1)[..., 0])),
    "v heads not a multiple of q's": ("v", dict(v=lambda k: torch.zeros(1, 20, 3, 16))),
    "g missing": ("g", dict(g=...)),
    "g wrong shape": ("g", dict(g=lambda k: k["g"][..., None].expand(1, 20, 2, 32).contiguous())),
    "g wrong dtype": ("g", dict(g=lambda k: k["g"].to(torch.bfloat16))),
    "read_logits missing": ("read_logits", dict(read_logits=...)),
    "write_logits unexpected": ("write_logits", dict(write_logits=lambda k: k["read_logits"])),
    "g_gamma unexpected": ("g_gamma", dict(g_gamma=torch.zeros(2))),
    "norm_weight wrong shape": ("norm_weight", dict(norm_weight=torch.ones(32))),
    "initial_state wrong shape": ("initial_state", dict(initial_state=torch.zeros(1, 2, 16, 32))),
    "initial_state not fp32": ("initial_state", dict(initial_state=lambda k: k["initial_state"].double())),
    "cu_seqlens not ending at T": ("cu_seqlens", dict(cu_seqlens=torch.tensor([0, 5, 19]))),
    "cu_seqlens decreasing": ("cu_seqlens", dict(cu_seqlens=torch.tensor([0, 12, 5, 20]))),
    "cu_seqlens int32": ("cu_seqlens", dict(cu_seqlens=torch.tensor([0, 5, 20], dtype=torch.int32))),
    "cu_seqlens 2-D": ("cu_seqlens", dict(cu_seqlens=torch.tensor([[0, 5, 20]]))),
    "initial_state rows vs cu_seqlens": ("initial_state", dict(cu_seqlens=torch.tensor([0, 5, 20]))),
    "scale not a number": ("scale", dict(scale="0.5")),
    "output_final_state not bool": ("output_final_state", dict(output_final_state=1)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_input_names_the_argument(case):
    arg, changes = CASES[case]
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        call(**changes)


def test_cu_seqlens_needs_batch_one():
    ker, _ = inputs("mamba2", 2, 20, 2)
    with pytest.raises(ValueError, match="^cu_seqlens"):
        compiled("mamba2")(**{**ker, "initial_state": None}, cu_seqlens=torch.tensor([0, 20]))


def test_recurrent_checks_too():
    ker, _ = inputs("mamba2", 1, 4, 2)
    with pytest.raises(ValueError, match="^g:"):
        compiled("mamba2").recurrent(**{**ker, "g": None})


def test_gpu_device_mismatch():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA for a second device")
    ker, _ = inputs("mamba2", 1, 20, 2)
    with pytest.raises(ValueError, match="^g"):
        compiled("mamba2")(**{k: (x.cuda() if k != "g" else x) for k, x in ker.items()})


def test_spec_no_family_serves_raises_unsupported_spec():
    # the delta family's chunks stop at 64 (forward substitution in registers): a fixed 128 is refused
    with pytest.raises(UnsupportedSpec, match="^chunk_size: 128 is not generated"):
        slagen.compile(dataclasses.replace(BUILTIN_SPECS["gdn"], head_dim_k=32, head_dim_v=16, chunk_size=128))
