"""`slagen bench` plumbing on the CPU: correctness before timing, peers that cannot run say why, the result
structure, the CPU refusal, the CLI's user errors, and fla's mapping against a CPU stand-in with fla's
signatures. No timing assertions: CPU times mean nothing."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import bench_fake_fla
import slagen
import slagen.api
from slagen import bench as B
from slagen.cli import main
from slagen.reference import attention

ROOT = Path(__file__).resolve().parents[2]


def _tiny(name: str, dim: int = 16):
    return dataclasses.replace(slagen.load_spec(name), head_dim_k=dim, head_dim_v=dim)


class ReferenceOp:
    """Stands in for slagen's compiled op where the test is about the bench, not the kernels."""

    def __init__(self, spec, factor: float = 1.0, differentiable: bool = True) -> None:
        self.spec, self.factor, self.differentiable = spec, factor, differentiable

    def __call__(self, q, k, v, **kwargs):
        with torch.set_grad_enabled(self.differentiable and torch.is_grad_enabled()):
            o, state = attention(self.spec, q, k, v, **kwargs, method="chunked")
        return o * self.factor, state


# --- the real kernels, under the interpreter ----------------------------------------------------------------

@pytest.mark.interpreter
def test_gated_variant_plumbing_under_the_interpreter():
    spec = _tiny("sla_mamba2")
    report = slagen.api.bench(spec, "1x16x2", vs="fla,sdpa,reference,slagen_base,authors", allow_cpu=True)
    assert report.meaningful is False and "mean nothing" in report.note
    assert report.variant == "sla_mamba2" and report.dtype == "float32"
    assert set(report.versions) >= {"slagen", "torch", "triton", "fla"}
    (shape,) = report.shapes
    assert (shape.shape, shape.batch, shape.seqlen, shape.heads, shape.head_dim_v) == ("1x16x2", 1, 16, 2, 16)
    assert [r.peer for r in shape.rows] == ["slagen", "fla", "sdpa", "reference", "slagen_base", "authors"]
    mine = shape.row("slagen")
    assert mine.status == "ok" and mine.fwd_error is not None and mine.fwd_error < B.TOLERANCE["float32"]
    assert mine.fwd_ms is not None and mine.fwd_ratio == 1.0
    assert mine.bwd_status in ("ok", "n/a")  # "n/a" until the variant has a backward kernel
    if mine.bwd_status == "ok":
        assert mine.fwdbwd_ms is not None and mine.grad_error < B.TOLERANCE["float32"] * B.GRAD_FACTOR
    else:
        assert mine.fwdbwd_ms is None and "autograd" in mine.bwd_reason
    fla = shape.row("fla")
    assert fla.status == "unavailable" and fla.fwd_ms is None
    assert "CUDA" in fla.reason or "not installed" in fla.reason
    authors = shape.row("authors")
    assert authors.status == "unavailable" and "ZeroS" in authors.reason
    for peer in ("sdpa", "reference", "slagen_base"):
        row = shape.row(peer)
        assert row.status == "ok", (peer, row.reason)
        assert row.fwd_ratio is not None and row.peak_fwd_mib is None  # no CUDA: no memory figures
    assert shape.row("slagen_base").impl.startswith("slagen.compile(")
    json.dumps(report.to_dict())  # the --json payload


# --- the bench logic, with stand-in ops (no interpreter) ----------------------------------------------------

def test_refuses_timing_on_the_cpu_without_allow_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(B.BenchError, match="--allow-cpu"):
        B.run_bench(_tiny("retnet"), "1x16x2", vs="reference", slagen_op=ReferenceOp(_tiny("retnet")))


def test_a_mismatch_is_reported_and_not_timed():
    spec = _tiny("mamba2")
    report = B.run_bench(spec, "2x24x2", vs="reference", allow_cpu=True, slagen_op=ReferenceOp(spec, factor=1.5))
    mine, ref = report.shapes[0].rows
    assert mine.status == "mismatch" and "relative RMS" in mine.reason and mine.fwd_error > 0.1
    assert mine.fwd_ms is None and mine.fwdbwd_ms is None
    assert ref.status == "ok" and ref.fwd_ms is not None and ref.fwd_ratio is None  # nothing to compare with


def test_no_autograd_is_na_and_forward_is_still_timed():
    spec = _tiny("retnet")
    report = B.run_bench(spec, "1x20x2", vs="reference", allow_cpu=True,
                         slagen_op=ReferenceOp(spec, differentiable=False))
    mine, ref = report.shapes[0].rows
    assert mine.status == "ok" and mine.fwd_ms is not None
    assert mine.bwd_status == "n/a" and "no autograd" in mine.bwd_reason and mine.fwdbwd_ms is None
    assert ref.bwd_status == "ok" and ref.fwdbwd_ms is not None and ref.fwdbwd_ratio is None


def test_per_head_gate_parameters_are_kept_whole_and_differentiated():
    # delta_gate="mamba" adds A_log and dt_bias [H]: the check slices must not cut them by batch row.
    spec = dataclasses.replace(_tiny("gdn"), delta_gate="mamba")
    report = B.run_bench(spec, "3x20x2", vs="reference", allow_cpu=True, check_seqlen=12,
                         slagen_op=ReferenceOp(spec))
    mine, ref = report.shapes[0].rows
    assert mine.status == "ok" and mine.bwd_status == "ok" and mine.grad_error < 1e-6
    assert ref.status == "ok" and ref.bwd_status == "ok"


def test_backward_can_be_skipped_and_shapes_slice_for_the_check():
    spec = _tiny("gla")
    report = B.run_bench(spec, "3x40x2", vs="sdpa", allow_cpu=True, backward=False, check_seqlen=24,
                         slagen_op=ReferenceOp(spec))
    shape = report.shapes[0]
    assert shape.check_seqlen == 24 and shape.io_bytes > 0
    assert all(r.bwd_status == "skipped" and r.fwdbwd_ms is None for r in shape.rows)
    assert shape.row("sdpa").status == "ok"


@pytest.mark.parametrize("bad, message", [("flash", "unknown peer"), ("fla,,nope", "unknown peer")])
def test_unknown_peer(bad, message):
    with pytest.raises(B.BenchError, match=message):
        B.parse_peers(bad)


def test_zeros_authors_formulation_matches_the_reference():
    spec = _tiny("zeros")
    report = B.run_bench(spec, "2x48x3", vs="authors,slagen_base", allow_cpu=True, slagen_op=ReferenceOp(spec))
    shape = report.shapes[0]
    assert shape.row("authors").status == "ok" and shape.row("authors").fwd_error < 1e-5
    assert shape.row("authors").bwd_status == "ok"
    assert shape.row("slagen_base").status == "unavailable"  # ZeroS without gates: nothing to compose


# --- fla's mapping, against a CPU stand-in with fla's signatures --------------------------------------------

@pytest.mark.parametrize("name, entry", [
    ("linear", "chunk_simple_gla"), ("retnet", "chunk_simple_gla"), ("mamba2", "chunk_simple_gla"),
    ("gla", "chunk_gla"), ("gdn", "chunk_gated_delta_rule"), ("sla_retnet", "chunk_simple_gla"),
    ("sla_gla", "chunk_gla"), ("sla_gdn", "chunk_gated_delta_rule"), ("zeros", "chunk_simple_gla"),
])
def test_fla_mapping_computes_the_variant(monkeypatch, name, entry):
    bench_fake_fla.install(monkeypatch)
    spec = _tiny(name)
    report = B.run_bench(spec, "2x40x3", vs="fla", allow_cpu=True, slagen_op=ReferenceOp(spec))
    fla = report.shapes[0].row("fla")
    assert fla.status == "ok", fla.reason
    assert fla.fwd_error < 1e-5 and fla.bwd_status == "ok" and fla.grad_error < 1e-4, fla.bwd_reason
    calls = [c for c in bench_fake_fla.CALLS if c[0] == entry]
    assert calls, bench_fake_fla.CALLS
    args = calls[0][1]
    if name in ("retnet", "sla_retnet"):
        assert args["g_gamma"] and not args["g"]
    if name == "linear":
        assert not args["g_gamma"] and not args["g"]
    if "gdn" in name:
        assert args["use_qk_l2norm_in_kernel"] is True and args["beta_dtype"] == args["q_dtype"]
    if name == "zeros":
        assert args["scale"] == 1.0 and "3K" in fla.impl
    elif name.startswith("sla_"):
        assert "RMSNorm" in fla.impl and "softmax over heads" in fla.impl


def test_fla_peer_reports_why_it_cannot_run_on_the_cpu():
    spec = _tiny("gla")
    report = B.run_bench(spec, "1x16x2", vs="fla", allow_cpu=True, slagen_op=ReferenceOp(spec))
    fla = report.shapes[0].row("fla")
    assert fla.status == "unavailable" and fla.reason and fla.fwd_ms is None


def test_fla_has_no_form_for_decayed_zeros(monkeypatch):
    bench_fake_fla.install(monkeypatch)
    spec = _tiny("zeros_retnet")
    report = B.run_bench(spec, "1x16x2", vs="fla,authors", allow_cpu=True, slagen_op=ReferenceOp(spec))
    for peer in ("fla", "authors"):
        row = report.shapes[0].row(peer)
        assert row.status == "unavailable" and "decayed ZeroS" in row.reason


# --- CLI ----------------------------------------------------------------------------------------------------

def _cli(*args):
    return CliRunner().invoke(main, ["bench", *args])


@pytest.mark.parametrize("args, message", [
    (["retnet", "--vs", "flash"], "unknown peer 'flash'"),
    (["retnet", "--dtype", "int8"], "--dtype"),
    (["retnet", "--shapes", "2x"], "BxTxH"),
    (["no_such_variant"], "no_such_variant"),
])
def test_cli_user_errors(args, message):
    result = _cli(*args)
    assert result.exit_code == 2
    assert result.output.startswith("slagen: error:") and message in result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1


def test_cli_refuses_the_cpu_without_allow_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = _cli("retnet", "--shapes", "1x16x2")
    assert result.exit_code == 2 and "--allow-cpu" in result.output and "Traceback" not in result.output


def test_cli_json(monkeypatch):
    spec = _tiny("retnet")
    def fake_bench(spec_name, shapes, **kw):
        return B.run_bench(spec, shapes, vs=kw["vs"], allow_cpu=True, backward=kw["backward"],
                           slagen_op=ReferenceOp(spec))

    monkeypatch.setattr(slagen.api, "bench", fake_bench)
    result = CliRunner().invoke(main, ["bench", "retnet", "--shapes", "1x16x2", "--vs", "reference",
                                       "--allow-cpu", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["meaningful"] is False and data["shapes"][0]["rows"][0]["peer"] == "slagen"


# --- benchmarks/ --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("script", ["run_anchors.py", "cold_start.py"])
def test_benchmark_scripts_import_light(script):
    code = ("import importlib.util, sys\n"
            f"s = importlib.util.spec_from_file_location('m', {str(ROOT / 'benchmarks' / script)!r})\n"
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\n"
            "bad = [n for n in ('optuna', 'sqlalchemy', 'alembic') if n in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_peer_callable_for_scripts(monkeypatch):
    bench_fake_fla.install(monkeypatch)
    spec = _tiny("retnet")
    impl, fn = B.peer_callable("fla", spec, dtype="float32", device="cpu")
    assert "g_gamma" in impl
    x = slagen.reference.make_inputs(spec, 1, 16, 2, dtype=torch.float32)
    o = fn(x)
    assert B.rel_rms(o, attention(spec, **x)[0]) < 1e-5
    with pytest.raises(B.Unavailable, match="ZeroS"):
        B.peer_callable("authors", spec, dtype="float32", device="cpu")


def test_run_bench_needs_slagens_compiler():
    """The bench does not import slagen.api: the caller hands in slagen.compile (or a compiled op)."""
    with pytest.raises(B.BenchError, match="compile_op"):
        B.run_bench(_tiny("retnet"), "1x16x2", vs="reference", allow_cpu=True)
