"""Context parallelism (`slagen.cp`) on 2 and 4 gloo processes against the same op on the whole batch in
one process: outputs, final states and every gradient, for fixed-length and varlen batches whose sequences
cross rank boundaries (and one whose sequences start on rank boundaries), with compiled kernels (fp32,
Triton's interpreter) for a gated variant, a delta-rule one and ZeroS, and with the float64 reference for
the other variants' maps (GLA's per-channel decay, the delta rule with V < K, decayed ZeroS). Grouped value
heads (HV = 2H: states, maps and their gradients per value head, q/k per q/k head) likewise: compiled
kernels of the three families on 2 ranks (the interpreter is slow on 4 processes), the reference's maps on
2 and 4 (4 ranks give slices inside one sequence, whose maps compose). And a rank's peak memory: from 2 to 4
ranks it grows by the exchanged states only.
"""

from __future__ import annotations

import functools

import pytest

from cp_cases import case, spec_of
from cp_launch import compare, spawn_ranks
from slagen.runtime.cp_state import exchanged_bytes

pytestmark = pytest.mark.interpreter

KERNEL_TOL = 1e-4   # fp32 kernels on one rank vs several: the same arithmetic in another order
REFERENCE_TOL = 1e-10  # float64
MEM_T_LOCAL = 192  # tokens per rank in the memory case: one rank's k is 6x a state


def cases(world: int) -> list[dict]:
    kernel = [
        case("retnet_fixed", "retnet", T=16, kernel=True),
        case("sla_gdn_varlen", "sla_gdn", seqlens=[5, 9, 2], kernel=True),
        case("zeros_varlen", "zeros", seqlens=[3, 13], kernel=True),
    ]
    reference = [
        case("ref_sla_gla_varlen", "sla_gla", seqlens=[3, 9, 2, 2]),
        case("ref_gdn_v_lt_k", "gdn", T=16, dims=(32, 16)),
        case("ref_mamba2_aligned", "mamba2", seqlens=[8, 4, 4]),  # sequences start on rank boundaries
        case("ref_zeros_mamba2_varlen", "zeros_mamba2", seqlens=[6, 10]),
        case("ref_zeros_gla", "zeros_gla", T=16),
        case("ref_zeros_retnet_varlen", "zeros_retnet", seqlens=[1, 14, 1]),
    ]
    grouped_kernel = [
        case("gva_mamba2_varlen", "mamba2", H=1, HV=2, seqlens=[5, 9, 2], kernel=True),
        case("gva_sla_gdn", "sla_gdn", H=1, HV=2, T=16, kernel=True),
        case("gva_zeros_varlen", "zeros", H=1, HV=2, seqlens=[3, 13], kernel=True),
    ] if world == 2 else []
    grouped_reference = [
        case("ref_gva_sla_gla_varlen", "sla_gla", HV=4, seqlens=[3, 9, 2, 2]),
        case("ref_gva_retnet", "retnet", HV=4, T=16),
        case("ref_gva_gdn_v_lt_k", "gdn", HV=4, T=16, dims=(32, 16)),
        case("ref_gva_zeros_mamba2_varlen", "zeros_mamba2", HV=4, seqlens=[6, 10]),
    ]
    memory = [case("memory", "mamba2", T=MEM_T_LOCAL * world, H=2, chunk=64)]
    return kernel + reference + grouped_kernel + grouped_reference + memory


@functools.lru_cache(maxsize=None)
def run(world: int) -> tuple[list[dict], list[dict]]:
    todo = cases(world)
    return todo, spawn_ranks(world, todo, timeout=400)


@pytest.mark.parametrize("world", [2, 4])
def test_matches_single_process(world):
    todo, ranks = run(world)
    for c in todo:
        compare(c, ranks, KERNEL_TOL if c["kernel"] else REFERENCE_TOL)


def test_peak_memory_grows_by_the_exchanged_states_only():
    """Same tokens per rank on 2 and 4 ranks: the first and the last rank (same roles in both) may hold
    more only by the maps and state gradients the 2 extra ranks send, never by a slice of their tokens."""
    (c2, r2), (_, r4) = run(2), run(4)
    spec = spec_of(c2[-1])
    sent = exchanged_bytes(spec, 2, 2, itemsize=8)  # float64 reference states
    per_rank = sent["send_forward"] + sent["send_backward"]
    k_slice = MEM_T_LOCAL * 2 * spec.head_dim_k * 8
    assert per_rank * 4 < k_slice  # the bound below could not hide one slice of k
    for a, b in ((r2[0], r4[0]), (r2[-1], r4[-1])):
        growth = b["memory"]["peak"] - a["memory"]["peak"]
        assert growth <= 2 * per_rank * 2, (
            f"peak grew by {growth} B from 2 to 4 ranks; 2 more ranks send {2 * per_rank} B of maps and gradients")
