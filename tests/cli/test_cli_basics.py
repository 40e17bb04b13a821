"""The CLI skeleton: every command has an example; user mistakes exit 2 with one line."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from slagen.cli import main


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_every_command_has_an_example():
    def walk(command, path):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, path + [name])
        else:
            yield path, command

    for path, command in walk(main, []):
        assert "Example: slagen" in (command.help or ""), f"slagen {' '.join(path)} has no Example"


def test_variants_json():
    result = _run("variants", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["sla_gla"]["head_gate"] == "read"


def test_spec_show_and_validate(tmp_path):
    result = _run("spec", "show", "gla")
    assert result.exit_code == 0 and json.loads(result.output)["decay"] == "vector"
    good = tmp_path / "mine.toml"
    good.write_text('name = "mine"\ndecay = "scalar"\nhead_gate = "read"\n')
    result = _run("spec", "validate", str(good))
    assert result.exit_code == 0 and "ok  mine" in result.output


@pytest.mark.parametrize("text,message", [
    ('name = "x"\ndecay = "expo"\n', "decay: expected one of"),
    ('name = "x"\nhead_dim_k = 512\n', "head_dim_k: expected an integer in 16..256"),
    ('name = "x"\nfoo = 1\n', "foo: unknown field"),
])
def test_bad_spec_is_one_line_exit_2(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "slagen.cli", "spec", "validate", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_doctor_json():
    result = _run("doctor", "--json")
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert {"slagen", "torch", "triton", "interpreter_mode", "tuning_db"} <= set(report)


def test_build_compile_for_names_a_bad_gpu_in_one_line(tmp_path):
    result = _run("build", "retnet", "--no-tune", "--out", str(tmp_path), "--compile-for", "h100,v100")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == ("slagen: error: --compile-for: expected GPU names from a100, "
                                                      "b200, h100, h200 (comma-separated), got 'v100'")
    assert not (tmp_path / "slagen_kernels").exists()
