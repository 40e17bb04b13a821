"""Ahead-of-time compilation for a GPU that is not here (`slagen.tuning.aot`, `slagen aot`).

The recorder runs a launcher without launching; each recorded kernel is compiled by Triton's real GPU
pipeline (TTIR -> PTX -> cubin with the bundled ptxas) for sm_90. A probe module shows the check sees
what the CPU interpreter lets by (a bf16 dot with an inner dimension under 16, shared memory past the
H100's per-block limit); the built-ins' default kernels must compile and fit.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from slagen import api
from slagen.cli import main
from slagen.spec import BUILTIN_SPECS
from slagen.tuning import aot
from slagen.tuning.sass import SassMix
from slagen.tuning.sass import count as count_sass

PROBE = '''
import torch
import triton
import triton.language as tl


@triton.jit
def twice(x):
    return x * 2


@triton.jit
def tile_product(x, y, n, N: tl.constexpr):
    o = tl.arange(0, N)
    a = tl.load(x + o[:, None] * N + o[None, :])
    tl.store(y + o[:, None] * N + o[None, :], twice(tl.dot(a, a)) + n)


def run(x, N):
    y = torch.empty_like(x)
    tile_product[(1,)](x, y, 3, N=N, num_warps=4)
    return y
'''


def probe(n: int, dtype: torch.dtype) -> list[aot.Compiled]:
    return aot.compile_module(PROBE, lambda module: module.run(torch.randn(n, n).to(dtype), n), 90)


def test_recorder_launches_nothing_and_sees_every_argument():
    module = aot.import_compilable(PROBE)
    x = torch.randn(16, 16)
    launches = aot.record_launches(module, lambda m: m.run(x, 16))
    assert [launch.name for launch in launches] == ["tile_product"]
    assert launches[0].args["x"] is x and launches[0].args["n"] == 3 and launches[0].args["N"] == 16
    assert launches[0].options == {"num_warps": 4}
    assert not isinstance(module.tile_product, aot._Recorder), "the kernel was not put back"


def test_jobs_carry_the_jits_specialisation():
    # as the JIT specialises a launch: an aligned pointer and an int divisible by 16 are marked divisible
    # (the compiler then vectorises their loads), other ints are not; no kernel is compiled here
    (job,) = aot.jobs_for(PROBE, lambda module: module.run(torch.randn(16, 16), 16))
    attrs = dict(job.attrs)
    assert attrs[0] == attrs[1] == [["tt.divisibility", 16]] and attrs[2] == [], attrs
    assert job.signature["n"] == "i32" and job.constexprs == {"N": 16}


def test_interpreter_module_is_not_reused():
    """The compilable copy has JITFunctions even when the process runs the interpreter."""
    from triton.runtime.jit import JITFunction

    module = aot.import_compilable(PROBE)
    assert isinstance(module.tile_product, JITFunction)


def test_compiles_a_valid_kernel_and_reports_shared_memory_and_registers():
    (result,) = probe(16, torch.bfloat16)
    assert result.ok and result.fits and 0 < result.shared <= aot.SHARED_LIMITS[90]
    assert 0 < result.registers <= 255 and result.spill_bytes == 0
    # a 16x16x16 bf16 dot is too small for a warpgroup MMA: one warp-level HMMA on bf16 operands
    mix = SassMix(**result.sass)
    assert mix.mma_types == ["BF16"] and "HMMA.16816.F32.BF16" in mix.mma, mix
    assert mix.ldl == mix.stl == 0 and mix.instructions > 0


def test_reports_register_spills():
    # a 128x128 fp32 accumulator over 4 warps is 128 values per thread before the operands: registers
    # run out (Hopper's limit is 255 per thread) and ptxas spills to local memory
    (small,) = probe(64, torch.float32)
    (large,) = probe(256, torch.bfloat16)
    assert small.spill_bytes == 0 and large.registers > small.registers
    assert large.spill_bytes > 0 or large.registers == 255, (large.registers, large.spill_bytes)
    # fp32 operands run on the tensor cores as TF32 (a 64-row tile: Hopper's warpgroup MMA, K = 8)
    small_mix, large_mix = SassMix(**small.sass), SassMix(**large.sass)
    assert small_mix.mma_types == ["TF32"] and any(op.startswith("HGMMA.64x") for op in small_mix.mma), small_mix
    assert small_mix.stl == 0 and (large_mix.stl > 0) == (large.spill_bytes > 0), large_mix


def test_sass_count_reads_opcodes_predicates_and_modifiers():
    text = """
        /*0260*/                   HMMA.1688.F32.TF32 R4, R4, R16, RZ ;         /* 0x000000100404723c */
                                                                                /* 0x000fe20000000800 */
        /*0270*/              @!P0 HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4].tnspB, RZ, !UPT ;  /* 0x40e0 */
        /*0280*/                   FFMA.FTZ R1, R2, R3, R4 ;
        /*0290*/               @P1 FFMA R1, R2, R3, R4 ;
        /*02a0*/                   STL.64 [R1+0x8], R2 ;
        /*02b0*/                   LDL.LU R2, [R1+0x8] ;
        /*02c0*/                   HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4].tnspB, R24 ;
        /*02d0*/                   FMUL R1, R2, R3 ;
    """
    mix = count_sass(text)
    assert mix.mma == {"HGMMA.64x128x16.F32.BF16": 2, "HMMA.1688.F32.TF32": 1}
    assert mix.mma_types == ["BF16", "TF32"]
    assert (mix.ffma, mix.ldl, mix.stl, mix.instructions) == (2, 1, 1, 8)


def test_finds_a_dot_the_gpu_compiler_refuses():
    # the interpreter multiplies 8x8 bf16 tiles happily; the GPU's MMA needs an inner dimension >= 16
    (result,) = probe(8, torch.bfloat16)
    assert not result.ok and "K >= 16" in result.error


def test_finds_shared_memory_past_the_limit():
    (result,) = probe(256, torch.float32)
    assert result.ok and not result.fits and result.shared > aot.SHARED_LIMITS[90]


# one variant per kernel family, each op; the whole package is `scripts/main.sh`'s `slagen aot`
@pytest.mark.parametrize("name", ["sla_retnet", "gla", "gdn", "zeros_mamba2"])
def test_builtin_defaults_compile_for_sm90(name):
    results = api.aot([name], arch=90, cases=("fixed",))
    ops = {r.op for r in results}
    assert ops == {"forward", "recurrent", "backward"}, ops
    bad = [f"{r.op}.{r.kernel}: {r.error[:300]} ({r.shared} B)" for r in results if not r.fits]
    assert not bad, bad
    # issue 17: no shipped default spills registers to local memory (this triton; the whole package under
    # each triton is benchmarks/README.md's `slagen aot` run)
    spills = [f"{r.op}.{r.kernel}: {r.spill_bytes} B" for r in results if r.spill_bytes > 0]
    assert not spills, spills


def test_usage_is_the_shipped_cubins():
    # registers and spills come from the ptxas run that built the cubin, with triton's own flags: a separate
    # plain `ptxas -v` (no --regAllocOptLevel=2, which triton 3.9 passes) reported gdn's varlen
    # delta_chunk_prepare at 80 registers and 4 B spilled where the cubin has 99 and none
    (item,) = [s for s in api._default_sources(api._as_spec("gdn")) if s.op == "forward"]
    inputs = aot.case_inputs(item.spec, "varlen", torch.bfloat16)
    jobs = [j for j in aot.jobs_for(item.source, aot.op_calls(item.spec, "forward", inputs, 0.125))
            if j.kernel == "delta_chunk_prepare"]
    (result,) = aot.compile_jobs(jobs, 90)
    assert result.ok and 0 < result.registers <= 255 and result.spill_bytes == 0, result


def test_fp_fusion_is_pinned_in_every_launch():
    # triton 3.10 turns FFMA contraction off unless a launch asks for it: every slagen launch asks, so the
    # compiled kernels (numerics, instruction count) do not change with the triton release
    (item,) = [s for s in api._default_sources(api._as_spec("retnet")) if s.op == "forward"]
    inputs = aot.case_inputs(item.spec, "fixed", torch.bfloat16)
    jobs = aot.jobs_for(item.source, aot.op_calls(item.spec, "forward", inputs, 0.125))
    assert jobs and all(j.options.get("enable_fp_fusion") is True for j in jobs), [j.options for j in jobs]
    (result,) = aot.compile_jobs(jobs[:1], 90)
    assert result.ok, result  # the compiler takes the option


def test_varlen_case_compiles_the_varlen_path():
    results = api.aot(["linear"], arch=90, cases=("varlen",))
    assert results and all(r.case == "varlen" and r.fits for r in results)


@pytest.mark.parametrize("args, message", [
    (["linear", "--arch", "75"], "--arch: expected one of"),
    (["linear", "--dtype", "int8"], "--dtype: expected float32, bfloat16 or float16, got 'int8'"),
    (["linear", "--cases", "fixed,odd"], "--cases: expected a comma-separated subset of fixed,varlen,grouped"),
    (["no_such_variant"], "'no_such_variant' is neither a built-in variant"),
])
def test_cli_refuses_bad_arguments(args, message):
    result = CliRunner().invoke(main, ["aot", *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_cli_json_reports_every_kernel():
    result = CliRunner().invoke(main, ["aot", "retnet", "--cases", "fixed", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["op"] for r in rows} == {"forward", "recurrent", "backward"}
    assert all(r["ok"] and r["fits"] and r["variant"] == "retnet" for r in rows)


def test_cli_report_prints_the_instruction_mix(monkeypatch):
    mix = {"instructions": 900, "mma": {"HGMMA.64x64x16.F32.BF16": 4}, "ffma": 12, "ldl": 3, "stl": 2}

    def fake(targets, progress=None, **kwargs):
        results = [aot.AotResult("retnet", "forward", "default", "fixed", "fwd_o", True, 1024, 232448, sass=mix),
                   aot.AotResult("retnet", "forward", "default", "fixed", "fwd_h", True, 1024, 232448, sass=None)]
        for r in results:
            progress(r)
        return results

    monkeypatch.setattr(api, "aot", fake)
    result = CliRunner().invoke(main, ["aot", "retnet", "--report"])
    assert result.exit_code == 0, result.output
    assert "sass: HGMMA.64x64x16.F32.BF16 x4; FFMA 12, LDL 3, STL 2 (900 instructions)" in result.output
    assert "sass: not disassembled" in result.output
    assert "MMA operands BF16" in result.output and "1 not disassembled" in result.output


def test_cli_exits_nonzero_on_a_kernel_that_cannot_run(monkeypatch):
    def fake(targets, **kwargs):
        return [aot.AotResult("linear", "forward", "default", "fixed", "k", True, 300000, 232448)]

    monkeypatch.setattr(api, "aot", fake)
    result = CliRunner().invoke(main, ["aot", "linear"])
    assert result.exit_code == 1 and "would not run on sm_90: linear.forward[default].k" in result.output


def test_every_builtin_is_known():
    # the test above covers the families; this guards the list against a family added without a case
    from slagen.codegen import lower

    families = {lower(spec)["forward"].template.split("_")[0] for spec in BUILTIN_SPECS.values()}
    assert families <= {"gated", "gla", "delta", "zeros"}, families


def test_package_kernel_files_import_for_compiling(tmp_path):
    """A built package's kernel files import their runtime copy relatively (`from . import launch`); `slagen aot
    PACKAGE` (scripts/main.sh) imports them as top-level modules, so it must give them slagen's runtime."""
    import dataclasses

    from slagen.codegen.package import VariantBuild, build_package
    from triton.runtime.jit import JITFunction

    spec = dataclasses.replace(BUILTIN_SPECS["retnet"], head_dim_k=16, head_dim_v=16)
    root = build_package([VariantBuild(spec)], tmp_path, "aot_pkg")
    files = sorted(p for p in (root / "kernels").glob("*.py") if p.name != "__init__.py")
    assert files and all("from . import launch" in f.read_text() for f in files)
    for path in files:
        module = aot.import_compilable(path.read_text())
        assert any(isinstance(v, JITFunction) for v in vars(module).values()), path.name


def test_grouped_case_compiles_the_grouped_path():
    # two value heads per q/k head: the G > 1 specialisations, and ZeroS's kernel summing dq, dk over a group
    results = api.aot(["zeros_mamba2"], arch=90, cases=("grouped",))
    assert {r.op for r in results} == {"forward", "recurrent", "backward"}
    assert "zeros_bwd_group_sum" in {r.kernel for r in results}
    bad = [f"{r.op}.{r.kernel}: {r.error[:300]} ({r.shared} B)" for r in results if not r.fits]
    assert not bad, bad


@pytest.mark.parametrize("name,kernel", [("gla", "bwd_dqk"), ("sla_gla", "bwd_dkv")])
def test_grouped_vector_decay_backward_does_not_spill(name, kernel):
    # grouped value heads with a decay vector: the kernels summing dq, dk over the group spilled 44 B / 40 B
    # under triton 3.9 at half block_k (0 B at 255 registers under 3.6); they take 16-column K blocks over
    # 64-column V blocks, unpipelined (gated_bwd's dqk_tiles / dkv_tiles)
    (item,) = [s for s in api._default_sources(api._as_spec(name)) if s.op == "backward"]
    inputs = aot.case_inputs(item.spec, "grouped", torch.bfloat16)
    jobs = [j for j in aot.jobs_for(item.source, aot.op_calls(item.spec, "backward", inputs, 0.125))
            if j.kernel == kernel]
    assert jobs and jobs[0].constexprs["G"] == 2
    (result,) = aot.compile_jobs(jobs, 90)
    assert result.ok and result.spill_bytes == 0, result


def test_training_specialisations_are_compiled():
    """sla_gdn's training forward (storing o before the epilogue, STORE_RAW) and the backward that reads it
    (SAVED_OUTPUT, the default epilogue_input "saved") are among the launches `slagen aot` compiles, beside
    the inference forward; nothing is compiled here."""
    from slagen.codegen import lower, render

    spec = BUILTIN_SPECS["sla_gdn"]
    inputs = aot.case_inputs(spec, "fixed", torch.bfloat16)
    constexprs = {}
    for op in ("forward", "backward"):
        plan = lower(spec)[op]
        for job in aot.jobs_for(render(plan, plan.default_config()), aot.op_calls(spec, op, inputs, 0.5)):
            constexprs.setdefault(job.kernel, []).append(job.constexprs)
    assert sorted(c["STORE_RAW"] for c in constexprs["delta_chunk_output"]) == [False, True]
    assert [c["SAVED_OUTPUT"] for c in constexprs["delta_bwd_dv_local"]] == [True]
