"""VariantSpec: validation messages, TOML <-> JSON round trips, hash stability, built-ins."""

import dataclasses
import json
from pathlib import Path

import pytest

from slagen.spec import (
    BUILTIN_SPECS, ProblemShape, SpecError, VariantSpec, load_spec, load_specs, parse_shapes, shape_bucket,
    spec_from_toml, spec_to_toml,
)

SPECS_DIR = Path(__file__).resolve().parents[2] / "specs"


def _refused(match: str, **fields):
    with pytest.raises(SpecError, match=match):
        VariantSpec(**{"name": "v", **fields})


@pytest.mark.parametrize("name", sorted(BUILTIN_SPECS))
def test_builtin_matches_its_toml_file(name):
    assert load_spec(SPECS_DIR / f"{name}.toml") == BUILTIN_SPECS[name]


def test_every_toml_file_is_a_builtin():
    assert sorted(p.stem for p in SPECS_DIR.glob("*.toml")) == sorted(BUILTIN_SPECS)


def test_builtin_names_cover_the_design():
    for name in ("linear", "retnet", "mamba2", "gla", "gdn", "sla_linear", "sla_retnet", "sla_mamba2",
                 "sla_gla", "sla_gdn", "zeros"):
        assert name in BUILTIN_SPECS
    assert any(s.experimental for s in BUILTIN_SPECS.values())


@pytest.mark.parametrize("spec", list(BUILTIN_SPECS.values()), ids=list(BUILTIN_SPECS))
def test_toml_and_json_round_trip(spec):
    assert spec_from_toml(spec_to_toml(spec)) == spec
    assert VariantSpec.from_json(spec.canonical_json()) == spec
    assert json.loads(spec.canonical_json())["name"] == spec.name


def test_hash_is_stable_and_sensitive():
    spec = BUILTIN_SPECS["gla"]
    # A literal: changing the canonical form changes every stored key, so it must be a conscious act.
    assert spec.spec_hash == "6fc19fac23e73667"
    assert dataclasses.replace(spec, chunk_size=64).spec_hash != spec.spec_hash
    assert dataclasses.replace(spec, description="other words").spec_hash == spec.spec_hash
    assert len({s.spec_hash for s in BUILTIN_SPECS.values()}) == len(BUILTIN_SPECS)


def test_replace_revalidates():
    with pytest.raises(SpecError, match="decay"):
        dataclasses.replace(BUILTIN_SPECS["gla"], decay="expo")


def test_unknown_field():
    with pytest.raises(SpecError, match=r"^colour: unknown field"):
        spec_from_toml('name = "x"\ncolour = "red"\n')


def test_missing_name():
    with pytest.raises(SpecError, match="name: missing"):
        spec_from_toml('decay = "none"\n')


@pytest.mark.parametrize("field,value", [
    ("decay", "expo"), ("head_gate", "sideways"), ("gate_scale", "tokens"), ("output_norm", "layer"),
    ("zero_sum_decay", "sometimes"),
])
def test_unknown_enum_value(field, value):
    _refused(rf"^{field}: expected one of .*got '{value}'", **{field: value})


@pytest.mark.parametrize("value", [8, 15, 257, 512, "64", 64.0, True])
def test_head_dim_outside_range(value):
    _refused(r"^head_dim_k: expected an integer in 16..256", head_dim_k=value)
    _refused(r"^head_dim_v: expected an integer in 16..256", head_dim_v=value)


@pytest.mark.parametrize("value", [8, 24, 48, 100, 512, "fast", 64.0, False])
def test_chunk_size_not_power_of_two_in_range(value):
    _refused(r'^chunk_size: expected "auto" or a power of two in 16..256', chunk_size=value)


@pytest.mark.parametrize("value", [16, 32, 64, 128, 256, "auto"])
def test_chunk_size_allowed(value):
    assert VariantSpec("v", chunk_size=value).chunk_size == value


def test_zero_sum_with_delta_refused():
    _refused(r'^decay: expected not "delta" with zero_sum = true', decay="delta", zero_sum=True)


def test_zero_sum_with_decay_needs_experimental_flag():
    _refused(r"^zero_sum_decay: expected .*experimental", decay="scalar", zero_sum=True)
    _refused(r"^zero_sum_decay: .*needs a scalar decay", decay="vector", zero_sum=True, zero_sum_decay="consistent")
    _refused(r"^zero_sum_decay: .*unless zero_sum", zero_sum_decay="state")
    assert VariantSpec("v", decay="vector", zero_sum=True, zero_sum_decay="state").experimental


@pytest.mark.parametrize("gate", ["write", "both"])
def test_zero_sum_refuses_write_gates(gate):
    _refused(r"^head_gate: expected \"none\" or \"read\" with zero_sum", zero_sum=True, head_gate=gate)


def test_gate_options_without_a_gate():
    _refused(r"^gate_temperature: .*no gate", gate_temperature=2.0)
    _refused(r"^gate_scale: .*no gate", gate_scale="heads")
    _refused(r"^gate_temperature: expected a finite number > 0", head_gate="read", gate_temperature=0)


@pytest.mark.parametrize("gate,needed", [
    ("read", {"read_logits"}), ("write", {"write_logits"}), ("both", {"read_logits", "write_logits"}),
])
def test_gates_declare_the_inputs_they_need(gate, needed):
    spec = VariantSpec("v", decay="scalar", head_gate=gate)
    assert needed | {"g"} == set(spec.required_inputs())


def test_dtypes_and_flags():
    _refused(r"^dtypes: expected a non-empty list", dtypes=("float64",))
    _refused(r"^dtypes: expected a non-empty list", dtypes=())
    _refused(r"^dtypes: expected each dtype at most once", dtypes=("float16", "float16"))
    _refused(r"^varlen: expected true or false", varlen="yes")
    assert VariantSpec("v", dtypes=["bfloat16"]).dtypes == ("bfloat16",)


def test_bad_name():
    with pytest.raises(SpecError, match=r"^name: expected a lowercase identifier"):
        VariantSpec("Bad Name")


def test_duplicate_names_refused(tmp_path):
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text('name = "mine"\n')
    b.write_text('name = "mine"\ndecay = "scalar"\n')
    with pytest.raises(SpecError, match=r"^name: duplicate variant name 'mine'"):
        load_specs([a, b])


def test_invalid_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "absent.toml")
    with pytest.raises(SpecError, match="neither a built-in variant"):
        load_spec("no_such_variant")


def test_shapes_and_buckets():
    assert parse_shapes("1x128x2, 2x4096x16") == [ProblemShape(1, 128, 2), ProblemShape(2, 4096, 16)]
    with pytest.raises(SpecError, match=r"^shapes: expected BxTxH"):
        parse_shapes("1x128")
    with pytest.raises(SpecError, match=r"^shape.batch: expected an integer >= 1"):
        ProblemShape(0, 1, 1)
    assert shape_bucket(32, 4096) == "bh32_t4096"
    assert shape_bucket(33, 4097) == "bh64_t8192"
    assert shape_bucket(1, 3) == "bh1_t64"
