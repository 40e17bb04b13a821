"""The `slagen` command line: each command parses options, makes one `slagen.api` call and renders it.

Data goes to stdout (`--json` for machines), progress and tables to stderr. A user mistake exits with
code 2 and one readable line, never a traceback.
"""

from __future__ import annotations

import dataclasses
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

    from .db.errors import TuningDBError
    from .runtime.dispatch import PackageError

    return (SpecError, ConfigError, UnsupportedSpec, FileNotFoundError, TuningDBError, PackageError)


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


@main.command()
@click.argument("specs", nargs=-1)
@click.option("--gpu", default="all", show_default=True,
              help="GPUs to ship tables for: all (every GPU in the DB), a GPU name, or auto (this one).")
@click.option("--db", "db_url", default=None, help="Tuning DB (SQLAlchemy URL); none: heuristic configs only.")
@click.option("--out", "out_dir", default="generated", show_default=True, help="Folder to write the package in.")
@click.option("--name", "package_name", default="slagen_kernels", show_default=True, help="Package name.")
@click.option("--no-tune", is_flag=True, help="Use the DB as it is (the default on machines without a GPU).")
@click.option("--json", "as_json", is_flag=True, help="Print the build report as JSON on stdout.")
@user_errors
def build(specs: tuple[str, ...], gpu: str, db_url: str | None, out_dir: str, package_name: str, no_tune: bool,
          as_json: bool) -> None:
    """Render the variants' kernels with their tuned configs into an importable package.

    With no SPEC, builds every shipped variant.

    Example: slagen build --db sqlite:///tuning.db --gpu all --out generated
    """
    from . import api
    from .spec import SHIPPED_VARIANTS

    report = api.build(list(specs) or list(SHIPPED_VARIANTS), gpu=gpu, db_url=db_url, out_dir=out_dir,
                       name=package_name)
    if as_json:
        _print_json(dataclasses.asdict(report))
        return
    err_console.print(f"built [bold]{report.package_dir}[/]: {len(report.variants)} variants, "
                      f"{report.tuned_entries} tuned entries for {', '.join(report.gpus) or 'no GPU (defaults only)'}")
    for line in report.refused:
        err_console.print(f"  not used: {line}")


@main.command()
@click.argument("package_dir")
@click.option("--variant", "variants", multiple=True, help="Check only these variants.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@user_errors
def check(package_dir: str, variants: tuple[str, ...], as_json: bool) -> None:
    """Import a generated package and compare every function with the reference.

    Example: slagen check generated/slagen_kernels
    """
    from . import api

    results = api.check(package_dir, variants=list(variants) or None)
    if as_json:
        _print_json([dataclasses.asdict(r) for r in results])
    else:
        table = Table(title=f"slagen check {package_dir}")
        for column in ("variant", "op", "rel. error", "ok"):
            table.add_column(column)
        for r in results:
            table.add_row(r.variant, r.op, f"{r.max_rel_error:.2e}", "ok" if r.ok else "[red]MISMATCH[/]")
        err_console.print(table)
    failed = [f"{r.variant}.{r.op}" for r in results if not r.ok]
    if failed:
        click.echo(f"slagen: error: mismatch against the reference: {', '.join(failed)}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
