"""Device fingerprints and analytic pruning, without a GPU."""

from __future__ import annotations

import pytest

from slagen.codegen import Axis, ConfigError, KernelPlan
from slagen.spec import VariantSpec
from slagen.tuning import A100_SXM, FIXTURES, H100_SXM, H200, build_space, detect, estimate_resources
from slagen.tuning.fingerprint import DeviceFingerprint, interpreter_fingerprint
from slagen.tuning.space import role_of

from tuning_helpers import any_template, toy_plan


def test_fixture_keys_are_distinct_stable_and_round_trip():
    keys = {fp.device_key for fp in FIXTURES.values()}
    assert len(keys) == 3
    assert H100_SXM.device_key == "h100-80gb-hbm3_sm90_132sm_cuda12.8_drv570.124.06"
    assert (H100_SXM.arch, H200.arch, A100_SXM.arch) == ("hopper", "hopper", "ampere")
    assert H100_SXM.smem_per_block == 227 * 1024 and A100_SXM.smem_per_block == 163 * 1024
    for fp in FIXTURES.values():
        assert DeviceFingerprint.from_dict(fp.to_dict()) == fp and fp.capability in ((9, 0), (8, 0))


def test_detect_on_this_machine_is_the_interpreter_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    fp = detect()
    assert fp.is_interpreter and fp.device_key == "cpu-interpreter"
    assert fp.smem_per_block is None and fp.name == "cpu-interpreter"


def test_axis_roles_by_suffix():
    assert role_of("chunk_size") == ("", "bt")
    assert role_of("h_num_warps") == ("h", "warps")
    assert role_of("o_block_v") == ("o", "bv")
    assert role_of("algo") is None


def _big_plan() -> KernelPlan:
    spec = VariantSpec("prune_toy", decay="fixed", head_dim_k=128, head_dim_v=128)
    axes = (Axis("chunk_size", (64,)), Axis("block_k", (64, 128)), Axis("block_v", (64, 128)),
            Axis("num_stages", (1, 2, 3)), Axis("num_warps", (4, 8)))
    default = {"chunk_size": 64, "block_k": 64, "block_v": 64, "num_stages": 2, "num_warps": 4}
    return KernelPlan(spec, "forward", any_template(), axes, default)


def test_pruning_removes_over_smem_configs_on_a100_but_keeps_them_on_h100():
    plan = _big_plan()
    big = plan.validate_config({"chunk_size": 64, "block_k": 128, "block_v": 128, "num_stages": 3, "num_warps": 8})
    smem = estimate_resources(plan, big, "bfloat16").smem_bytes
    assert A100_SXM.smem_per_block < smem <= H100_SXM.smem_per_block
    h100, a100 = build_space(plan, H100_SXM, "bfloat16"), build_space(plan, A100_SXM, "bfloat16")
    assert big in h100 and big not in a100
    assert "shared memory" in dict(a100.pruned)[big]
    assert set(a100.configs) < set(h100.configs)
    with pytest.raises(ConfigError, match="pruned"):
        a100.validate(big.as_dict())
    # fp32 doubles every tile: the same config no longer fits an H100 either
    assert big not in build_space(plan, H100_SXM, "float32")


def test_register_model_prunes_spilling_configs():
    plan = _big_plan()
    spill = plan.validate_config({"chunk_size": 64, "block_k": 128, "block_v": 128, "num_stages": 1, "num_warps": 4})
    space = build_space(plan, H100_SXM, "bfloat16")
    assert spill not in space and "registers" in dict(space.pruned)[spill]


def test_interpreter_keeps_a_small_subspace():
    plan = _big_plan()
    space = build_space(plan, interpreter_fingerprint(), "bfloat16")
    assert {c["num_stages"] for c in space.configs} == {1}
    assert {c["num_warps"] for c in space.configs} == {4}
    assert len(space) == 4 and not space.pruned  # no smem limits on the CPU
    assert space.default["num_stages"] == 1  # the plan default (stages 2) moved into the kept space


def test_custom_estimator_is_used():
    from slagen.tuning.space import ResourceEstimate

    plan = toy_plan()
    space = build_space(plan, H100_SXM, "bfloat16",
                        estimator=lambda p, c, d: ResourceEstimate(10**9 if c["algo"] == "fused" else 0, 32, 128))
    assert {c["algo"] for c in space.configs} == {"scan"}


@pytest.mark.parametrize("bad", [
    {"chunk_size": "64"},                      # a string where an int belongs
    {"algo": "scan'); import os; os.system('x"},  # code in an enum
    {"algo": "{{ config }}"},                  # template syntax
    {"chunk_size": 48},                        # an int outside the choices
    {"chunk_size": 10**9},
    {"chunk_size": -16},
    {"num_warps": True},                       # bools are not ints here
    {"chunk_size": 64.0},
    {"chunk_size": None},
    {"evil": 1},                               # unknown axis
    [("chunk_size", 64)],                      # not an object
    "chunk_size=64",
])
def test_invalid_configs_are_rejected_by_the_space(bad):
    plan = toy_plan()
    space = build_space(plan, H100_SXM, "bfloat16")
    data = dict(plan.default, **bad) if isinstance(bad, dict) else bad
    with pytest.raises(ConfigError):
        space.validate(data)
