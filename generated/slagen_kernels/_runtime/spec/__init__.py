"""Variant specs: pure Python, no torch."""

from .builtins import BUILTIN_SPECS, SHIPPED_VARIANTS
from .loading import load_spec, load_specs, spec_from_toml, spec_to_toml
from .shapes import ProblemShape, bucket_of, parse_shapes, shape_bucket
from .variant import (
    CHUNK_SIZES, DECAYS, DTYPES, GATE_SCALES, HEAD_GATES, OUTPUT_NORMS, ZERO_SUM_DECAYS, SpecError, VariantSpec,
)

__all__ = [
    "BUILTIN_SPECS", "SHIPPED_VARIANTS", "CHUNK_SIZES", "DECAYS", "DTYPES", "GATE_SCALES", "HEAD_GATES",
    "OUTPUT_NORMS", "ZERO_SUM_DECAYS", "ProblemShape", "SpecError", "VariantSpec", "bucket_of", "load_spec",
    "load_specs", "parse_shapes", "shape_bucket", "spec_from_toml", "spec_to_toml",
]
