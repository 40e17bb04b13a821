"""Classes 5 and 6 of issue 12: every failure is one line with exit 2, reads create nothing, Ctrl-C is 130,
and the output scripts read (piped, not a terminal) never cuts a name or a value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from slagen.cli import main
from slagen.spec import BUILTIN_SPECS

sys_path = Path(__file__).resolve().parents[1] / "db"


def _run(*args: str, **kwargs):
    return CliRunner().invoke(main, list(args), **kwargs)


def _one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    message = result.output.strip()
    assert message.startswith("slagen: error: ") and "\n" not in message, message
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in message, message
    return message


def _export(tmp_path: Path) -> Path:
    """A real export: one trial of a real spec, through the store."""
    import sys

    sys.path.insert(0, str(sys_path))
    from db_testdata import TrialFactory

    from slagen.db import TuningStore

    url = f"sqlite:///{tmp_path / 'src.db'}"
    with TuningStore(url) as store:
        TrialFactory().record(store)
        path = tmp_path / "good.jsonl"
        store.export_jsonl(path)
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, lines: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


@pytest.mark.parametrize("edit, needle", [
    (lambda t: t.update(n_repeats=2**70), "n_repeats"),
    (lambda t: t.update(seed=2**70), "seed"),
    (lambda t: t["device"].update(memory_bytes=2**80), "device.memory_bytes"),
    (lambda t: t["device"].update(sm_count=2**40), "device.sm_count"),
    (lambda t: t.update(median_ms=10**400), "median_ms"),
    (lambda t: t["config"].update(x=[[[[[[[[[[1]]]]]]]]]]), "config"),
])
def test_overflowing_or_deep_values_in_jsonl_are_one_line(tmp_path, edit, needle):
    lines = _lines(_export(tmp_path))
    edit(lines[2])
    lines[2].pop("trial_uid")
    bad = _write(tmp_path / "bad.jsonl", lines)
    _one_line_error(_run("db", "import", str(bad), "--db", f"sqlite:///{tmp_path / 'dst.db'}"), needle, "bad.jsonl:3")


def test_deeply_nested_json_is_one_line(tmp_path):
    bad = tmp_path / "deep.jsonl"
    bad.write_text('{"format": "slagen-tuning-jsonl", "format_version": 1}\n' + "[" * 200_000 + "]" * 200_000 + "\n")
    _one_line_error(_run("db", "import", str(bad), "--db", f"sqlite:///{tmp_path / 'dst.db'}"), "deep.jsonl:2")
    assert not (tmp_path / "dst.db").exists()  # the file is checked before the database is opened


def test_spec_hash_must_match_its_spec_and_one_hash_one_spec(tmp_path):
    lines = _lines(_export(tmp_path))
    forged = [dict(line) for line in lines]
    forged[1] = dict(forged[1], spec=dict(forged[1]["spec"], head_dim_k=64))
    _one_line_error(_run("db", "import", str(_write(tmp_path / "f.jsonl", forged)), "--db",
                         f"sqlite:///{tmp_path / 'a.db'}"), "spec_hash", "does not match its spec")
    # two different specs under one hash: the second is refused on import and on merge
    from slagen.db import TuningStore

    dst = f"sqlite:///{tmp_path / 'dst.db'}"
    assert _run("db", "import", str(tmp_path / "good.jsonl"), "--db", dst).exit_code == 0
    src = f"sqlite:///{tmp_path / 'src.db'}"
    with TuningStore(src) as store:  # rewrite the stored spec behind slagen's back
        from sqlalchemy import update

        from slagen.db.models import Variant

        with store.engine.begin() as conn:
            conn.execute(update(Variant).values(spec={"name": "other", "decay": "scalar"}))
    _one_line_error(_run("db", "merge", src, "--db", dst), "spec_hash")


def test_databases_that_are_not_sqlite_files(tmp_path):
    (tmp_path / "folder.db").mkdir()
    _one_line_error(_run("db", "info", "--db", f"sqlite:///{tmp_path / 'folder.db'}"), "folder")
    (tmp_path / "text.db").write_text("not a database")
    _one_line_error(_run("db", "info", "--db", f"sqlite:///{tmp_path / 'text.db'}"), "text.db")
    _one_line_error(_run("db", "upgrade", "--db", f"sqlite:///{tmp_path / 'text.db'}"), "text.db")
    (tmp_path / "file").write_text("x")
    _one_line_error(_run("db", "upgrade", "--db", f"sqlite:///{tmp_path / 'file' / 'x.db'}"), "file")


def test_reads_create_nothing(tmp_path):
    missing = tmp_path / "nowhere" / "mistyped.db"
    for args in (["db", "info"], ["db", "export", str(tmp_path / "out.jsonl")]):
        _one_line_error(_run(*args, "--db", f"sqlite:///{missing}"), "no tuning database")
    dst = tmp_path / "dst.db"
    _one_line_error(_run("db", "merge", f"sqlite:///{missing}", "--db", f"sqlite:///{dst}"), "mistyped.db")
    _one_line_error(_run("build", "linear", "--no-tune", "--db", f"sqlite:///{missing}", "--out",
                         str(tmp_path / "pkg")), "mistyped.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder, no database, no export, no package


def test_spec_files_that_are_not_utf8_or_not_specs(tmp_path):
    (tmp_path / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    _one_line_error(_run("spec", "validate", str(tmp_path / "latin1.toml")), "latin1.toml", "UTF-8")
    (tmp_path / "a.toml").write_text('name = "fine"\n')
    (tmp_path / "b.toml").write_text('name = "broken"\ndecay = "expo"\n')
    _one_line_error(_run("spec", "validate", str(tmp_path / "a.toml"), str(tmp_path / "b.toml")), "b.toml", "decay")


def test_tune_refuses_to_start_when_no_kernel_can_run(tmp_path, monkeypatch):
    import torch

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    db = tmp_path / "t.db"
    _one_line_error(_run("tune", "linear", "--shapes", "1x64x1", "--db", f"sqlite:///{db}"), "TRITON_INTERPRET")
    assert not db.exists()


@pytest.mark.parametrize("shapes", ["1x99999999999x1", "100000x1x1", "1x1x100000", "64x16777216x16", "2x-1x3"])
def test_absurd_shapes_are_refused_by_the_parser(shapes):
    _one_line_error(_run("tune", "linear", "--shapes", shapes), "shape")


def test_unknown_gpu_name_says_so(tmp_path):
    out = str(tmp_path / "pkg")
    _one_line_error(_run("build", "linear", "--no-tune", "--gpu", "NVIDIA H1000", "--out", out), "--gpu", "H1000")
    _one_line_error(_run("build", "linear", "--no-tune", "--gpu", "NVIDIA H1000", "--tuning-dir", "tuning_db",
                         "--out", out), "no tuning records for a GPU named 'NVIDIA H1000'")


def test_ctrl_c_exits_130(monkeypatch):
    from slagen import api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "db_info", interrupted)
    assert _run("db", "info").exit_code == 130
    import slagen.spec as spec_module

    monkeypatch.setattr(spec_module, "BUILTIN_SPECS", _Interrupting())
    assert _run("variants").exit_code == 130


class _Interrupting(dict):
    def items(self):
        raise KeyboardInterrupt

    def values(self):
        raise KeyboardInterrupt


def test_piped_variants_show_every_name_whole():
    result = _run("variants")
    assert result.exit_code == 0
    rows = [line.split("\t") for line in result.output.splitlines()]
    assert rows[0][0] == "name" and "…" not in result.output
    names = [row[0] for row in rows[1:]]
    assert names == list(BUILTIN_SPECS)
    assert all(row[-1] == BUILTIN_SPECS[row[0]].description for row in rows[1:])


def test_read_only_database_is_one_line(tmp_path):
    """A database opened read-only (SQLite's mode=ro: what a read-only file gives a non-root user)."""
    db = tmp_path / "ro.db"
    assert _run("db", "upgrade", "--db", f"sqlite:///{db}").exit_code == 0
    good = _export(tmp_path)
    _one_line_error(_run("db", "import", str(good), "--db", f"sqlite:///file:{db}?mode=ro&uri=true"), "readonly")


def test_unwritable_output_folder_is_one_line(tmp_path, monkeypatch):
    from slagen.codegen import package_files

    def denied(out_dir, package):
        raise PermissionError(13, "Permission denied", str(out_dir))

    monkeypatch.setattr(package_files, "make_staging", denied)
    _one_line_error(_run("build", "linear", "--no-tune", "--out", str(tmp_path)), "Permission denied", str(tmp_path))
