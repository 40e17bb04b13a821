"""Which fla-compatible layer class a variant gets in a generated package (no torch here: codegen names them,
`slagen.runtime.layers.FAMILIES` holds the classes).

Built-in variants take fla's class names (`gla` -> `GatedLinearAttention`, SLA forms prefixed `Sla`, `zeros` ->
`ZeroSAttention`); a user's own variant gets a class named after its spec. Variants no fla layer describes
(decayed ZeroS, ZeroS with a head gate) get none."""

from __future__ import annotations

from typing import Optional

from ..spec import VariantSpec

FAMILY_BY_DECAY = {"none": "LinearAttention", "fixed": "MultiScaleRetention", "scalar": "SimpleGatedLinearAttention",
                   "vector": "GatedLinearAttention", "delta": "GatedDeltaNet"}
BUILTIN_CLASS = {"linear": "LinearAttention", "retnet": "MultiScaleRetention", "mamba2": "SimpleGatedLinearAttention",
                 "gla": "GatedLinearAttention", "gdn": "GatedDeltaNet", "zeros": "ZeroSAttention"}
BUILTIN_CLASS.update({f"sla_{name}": f"Sla{cls}" for name, cls in list(BUILTIN_CLASS.items()) if name != "zeros"})


def layer_family(spec: VariantSpec) -> Optional[str]:
    """The fla family whose layer runs this spec, or None."""
    if spec.zero_sum:
        return "ZeroSAttention" if spec.decay == "none" and spec.head_gate == "none" else None
    return FAMILY_BY_DECAY[spec.decay]


def fla_layer(spec: VariantSpec) -> Optional[tuple[str, str]]:
    """`(class name, family)` for the package's layer of this spec, or None."""
    family = layer_family(spec)
    if family is None:
        return None
    name = BUILTIN_CLASS.get(spec.name) or "".join(part.title() for part in spec.name.split("_"))
    return name, family
