"""The whole pipeline through the CLI: tune (interpreter) -> db info/export/import -> build -> check."""

import json

import pytest
from click.testing import CliRunner

from slagen.cli import main

TINY = 'name = "tiny_retnet"\ndecay = "fixed"\nhead_dim_k = 16\nhead_dim_v = 16\ndtypes = ["float32"]\n'


def _ok(*args):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.mark.interpreter
def test_tune_fills_db_and_build_uses_it(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    db = f"sqlite:///{tmp_path / 'tuning.db'}"
    report = json.loads(_ok("tune", str(spec), "--shapes", "1x40x2", "--budget-trials", "2", "--db", db,
                            "--json").stdout)
    assert {s["op"] for s in report["searches"]} >= {"forward", "recurrent"}
    info = json.loads(_ok("db", "info", "--db", db, "--json").stdout)
    assert info["trials"] >= 4 and info["best"] >= 2
    export = tmp_path / "export.jsonl"
    _ok("db", "export", str(export), "--db", db)
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    _ok("db", "import", str(export), "--db", copy)
    assert json.loads(_ok("db", "info", "--db", copy, "--json").stdout)["trials"] == info["trials"]
    built = json.loads(_ok("build", str(spec), "--db", copy, "--out", str(tmp_path / "out"), "--no-tune",
                           "--json").stdout)
    assert built["tuned_entries"] >= 2 and built["refused"] == []
    checked = json.loads(_ok("check", str(tmp_path / "out" / "slagen_kernels"), "--json").stdout)
    assert {(c["variant"], c["op"]) for c in checked} == {("tiny_retnet", op) for op in ("forward", "recurrent", "backward")}
    assert all(c["ok"] for c in checked)


@pytest.mark.parametrize("args,message", [
    (["tune", "retnet", "--shapes", "1x128"], "shapes: expected BxTxH"),
    (["emit", "retnet", "--config", '{"chunk_size": "64); import os"}'], "config.chunk_size"),
    (["emit", "retnet", "--config", "{not json"], "--config: not valid JSON"),
    (["build", "no_such_variant"], "neither a built-in variant"),
    (["check", "/nonexistent/pkg"], "is not a generated package"),
])
def test_user_mistakes_exit_2_with_one_line(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_corrupt_export_is_refused(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    result = CliRunner().invoke(main, ["db", "import", str(bad), "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2 and "line 1" in result.stderr


@pytest.mark.parametrize("url,message", [
    ("notaurl", "--db: expected a SQLAlchemy URL"),
    ("postgresql+psycopg2://nobody:secret@127.0.0.1:1/x", "--db: cannot connect to postgresql+psycopg2://nobody:***@"),
    ("mysql://x@y/z", "--db: the database driver 'MySQLdb'"),
])
@pytest.mark.parametrize("command", [["db", "info"], ["db", "upgrade"]])
def test_bad_database_urls_are_one_line(command, url, message):
    result = CliRunner().invoke(main, [*command, "--db", url])
    assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1
    assert "secret" not in result.stderr
