"""Input checks that run before any launch; every error is a ValueError whose message starts with the
argument's name.

The call-convention checks (shapes, presence of gate inputs, cu_seqlens, initial_state shape, scale) are
`slagen.runtime.validate.validate_inputs`: one implementation shared with the reference (it depends on
torch and slagen.spec only). On top of it the kernels need:
- dtypes: q, k, v share one dtype from the spec's `dtypes`; every other float input (gates, logits, ZeroS
  inputs, norm_weight) is that dtype or float32; states are float32; cu_seqlens is int64;
- layout: every tensor contiguous (all on v's device is checked by the reference), except q, k, v, g and
  beta, which `layout.readable` reads in place or copies once (docs/conventions.md "Heads and strides").
"""

from __future__ import annotations

from typing import Any

import torch

from .. import env
from .layout import STRIDED
from .validate import OPTIONAL_TENSORS, check_value_ranges, default_scale, gate_inputs_are_logits, validate_inputs
from ..spec import VariantSpec

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _contiguous(name: str, x: torch.Tensor) -> None:
    if not x.is_contiguous():
        raise ValueError(f"{name}: expected a contiguous tensor (call .contiguous()), got strides {list(x.stride())}")


def check_values_if_enabled(kwargs: dict, logits: tuple[str, ...] = ()) -> None:
    """The reference's value checks (`check_value_ranges`) when SLAGEN_CHECK_VALUES=1: they read the values,
    a device sync, so the fast path leaves them out; kernels then compute whatever the values give."""
    if env.check_values():
        check_value_ranges({name: kwargs.get(name) for name in OPTIONAL_TENSORS if name != "norm_weight"}, logits)


def check_inputs(spec: VariantSpec, q: Any, k: Any, v: Any, *, initial_state: Any = None,
                 cu_seqlens: Any = None, scale: Any = None, **kwargs: Any) -> float:
    """Check one call (same keywords as the call convention) against the spec; returns the resolved scale.
    Values too under SLAGEN_CHECK_VALUES=1 (`check_values_if_enabled`)."""
    validate_inputs(spec, q, k, v, initial_state=initial_state, cu_seqlens=cu_seqlens, scale=scale,
                    check_values=False, **kwargs)
    check_values_if_enabled(kwargs, gate_inputs_are_logits(spec))
    allowed = [_DTYPES[d] for d in spec.dtypes]
    if v.dtype not in allowed:
        raise ValueError(f"v: expected dtype in {[str(d) for d in allowed]} (spec {spec.name!r} dtypes), "
                         f"got {v.dtype}")
    for name in OPTIONAL_TENSORS:
        x = kwargs.get(name)
        if x is None:
            continue
        if x.dtype not in (v.dtype, torch.float32):
            raise ValueError(f"{name}: expected dtype {v.dtype} (that of v) or torch.float32, got {x.dtype}")
        if name not in STRIDED:
            _contiguous(name, x)
    if initial_state is not None:
        parts = initial_state if isinstance(initial_state, (tuple, list)) else (initial_state,)
        for i, x in enumerate(parts):
            name = f"initial_state[{i}]" if len(parts) > 1 else "initial_state"
            if x.dtype != torch.float32:
                raise ValueError(f"{name}: expected dtype torch.float32 (states are fp32), got {x.dtype}")
            _contiguous(name, x)
    if cu_seqlens is not None:
        _contiguous("cu_seqlens", cu_seqlens)
    return default_scale(spec) if scale is None else float(scale)
