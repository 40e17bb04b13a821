"""Which fla-compatible class a package's variant gets: fla's names for the built-ins, the spec's name for a
user's own variant, none where no fla layer describes the variant."""

import dataclasses

from slagen.codegen.layer_names import fla_layer
from slagen.spec import BUILTIN_SPECS


def test_builtin_variants_take_fla_names():
    got = {name: fla_layer(spec) for name, spec in BUILTIN_SPECS.items()}
    assert got["gla"] == ("GatedLinearAttention", "GatedLinearAttention")
    assert got["mamba2"] == ("SimpleGatedLinearAttention", "SimpleGatedLinearAttention")
    assert got["retnet"] == ("MultiScaleRetention", "MultiScaleRetention")
    assert got["linear"] == ("LinearAttention", "LinearAttention")
    assert got["sla_gdn"] == ("SlaGatedDeltaNet", "GatedDeltaNet")
    assert got["zeros"] == ("ZeroSAttention", "ZeroSAttention")
    assert got["zeros_gla"] is None  # decayed ZeroS: no fla layer


def test_a_users_variant_is_named_after_its_spec():
    spec = dataclasses.replace(BUILTIN_SPECS["sla_gla"], name="my_gla_v2", gate_temperature=2.0)
    assert fla_layer(spec) == ("MyGlaV2", "GatedLinearAttention")
