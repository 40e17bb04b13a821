"""The `slagen` command line: each command parses options, makes one `slagen.api` call and renders it.

Data goes to stdout (`--json` for machines), progress and tables to stderr. A user mistake exits with
code 2 and one readable line, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from . import __version__

err_console = Console(stderr=True)


def _user_error_types() -> tuple[type[BaseException], ...]:
    from .codegen.plan import ConfigError, UnsupportedSpec
    from .spec import SpecError

    types: list[type[BaseException]] = [SpecError, ConfigError, UnsupportedSpec, FileNotFoundError]
    try:  # the DB layer has its own user-facing errors
        from .db.errors import DatabaseError

        types.append(DatabaseError)
    except ImportError:
        pass
    return tuple(types)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into `slagen: error: <one line>` and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _user_error_types() as err:
            click.echo(f"slagen: error: {err}", err=True)
            sys.exit(2)

    return wrapper


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="slagen")
def main() -> None:
    """slagen: generate, autotune and package Triton kernels for linear attention
    with SLA head gates and ZeroS.

    Example: slagen variants
    """


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the variants as JSON on stdout.")
def variants(as_json: bool) -> None:
    """List the built-in variants.

    Example: slagen variants --json
    """
    from .spec import BUILTIN_SPECS

    if as_json:
        _print_json({name: {"spec_hash": s.spec_hash, **s.to_dict()} for name, s in BUILTIN_SPECS.items()})
        return
    table = Table(title="built-in variants")
    for column in ("name", "decay", "head_gate", "zero_sum", "K", "V", "hash", "description"):
        table.add_column(column)
    for spec in BUILTIN_SPECS.values():
        zero_sum = spec.zero_sum_decay if spec.experimental else str(spec.zero_sum).lower()
        table.add_row(spec.name, spec.decay, spec.head_gate, zero_sum, str(spec.head_dim_k),
                      str(spec.head_dim_v), spec.spec_hash, spec.description)
    Console().print(table)


@main.group()
def spec() -> None:
    """Validate and show variant specs (TOML files or built-in names)."""


@spec.command("validate")
@click.argument("files", nargs=-1, required=True)
@user_errors
def spec_validate(files: tuple[str, ...]) -> None:
    """Check spec files; names must be unique across them.

    Example: slagen spec validate specs/*.toml
    """
    from .spec import load_specs

    for item in load_specs(files):
        click.echo(f"ok  {item.name}  {item.spec_hash}")


@spec.command("show")
@click.argument("file")
@click.option("--toml", "as_toml", is_flag=True, help="Print as TOML instead of canonical JSON.")
@user_errors
def spec_show(file: str, as_toml: bool) -> None:
    """Print a spec with every field filled in, and its hash.

    Example: slagen spec show sla_gla
    """
    from .spec import load_spec, spec_to_toml

    item = load_spec(file)
    if as_toml:
        click.echo(spec_to_toml(item), nl=False)
    else:
        _print_json({"spec_hash": item.spec_hash, "experimental": item.experimental, **item.to_dict()})


@main.command()
@click.argument("spec_name")
@click.option("--op", "--kernel", "op", default="forward", show_default=True,
              help="Which op to render: forward, recurrent, backward.")
@click.option("--config", "config_json", default=None, help="JSON object of axis values over the default.")
@click.option("--list", "list_ops", is_flag=True, help="List the ops and their tunable axes instead.")
@user_errors
def emit(spec_name: str, op: str, config_json: str | None, list_ops: bool) -> None:
    """Print the generated Triton source of one op of a variant.

    Example: slagen emit retnet --op forward --config '{"chunk_size": 32}'
    """
    from . import api
    from .codegen.plan import ConfigError

    if list_ops:
        _print_json(api.describe_ops(spec_name))
        return
    config = None
    if config_json is not None:
        try:
            config = json.loads(config_json)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--config: not valid JSON ({err.msg} at column {err.colno})") from None
    click.echo(api.emit(spec_name, op, config), nl=False)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def doctor(as_json: bool) -> None:
    """Versions, GPU, interpreter mode and the tuning DB location.

    Example: slagen doctor --json
    """
    from . import api

    report = api.doctor()
    if as_json:
        _print_json(report)
        return
    table = Table(title="slagen doctor", show_header=False)
    for key, value in report.items():
        table.add_row(key, str(value))
    Console().print(table)


if __name__ == "__main__":  # pragma: no cover
    main()
