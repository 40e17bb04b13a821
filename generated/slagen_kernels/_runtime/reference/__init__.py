"""Pure-PyTorch ground truth for every slagen variant: naive O(T²), recurrent and chunked forms.

`attention(spec, q, k, v, ...)` follows the call convention of docs/conventions.md; `make_inputs` builds
valid random inputs; `validate_inputs` is the argument check the kernel runtime shares.
"""

from .attention import DEFAULT_CHUNK_SIZE, METHODS, attention, zero_sum_weights
from .inputs import make_inputs
from .prepare import default_scale
from ..runtime.validate import CallShape, validate_inputs

__all__ = [
    "DEFAULT_CHUNK_SIZE", "METHODS", "CallShape", "attention", "default_scale", "make_inputs",
    "validate_inputs", "zero_sum_weights",
]
