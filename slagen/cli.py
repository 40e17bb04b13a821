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

    from .api import UsageError
    from .db.errors import TuningDBError
    from .runtime.dispatch import PackageError
    from .tuning.search import SearchError

    return (SpecError, ConfigError, UnsupportedSpec, FileNotFoundError, TuningDBError, PackageError, UsageError,
            SearchError)


def _one_line(text: str) -> str:
    """A message as one line: newlines and other control characters shown escaped, never acted on."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(str(text).split("\n")))


def _os_error(err: OSError) -> str:
    where = f"{err.filename!r}: " if err.filename is not None else ""
    return f"{where}{err.strerror or err}"


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into `slagen: error: <one line>` and exit code 2; Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _user_error_types() as err:
            click.echo(f"slagen: error: {_one_line(err)}", err=True)
            sys.exit(2)
        except OSError as err:  # a read-only folder, a full disk, a path that is a folder ...
            click.echo(f"slagen: error: {_one_line(_os_error(err))}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("slagen: interrupted", err=True)
            sys.exit(130)

    return wrapper


class _Table:
    """A table for people on a terminal (rich, long values folded, never cut), and plain tab-separated lines
    when the output is piped or redirected, so that scripts see every name and value whole."""

    def __init__(self, title: str, columns: tuple[str, ...], *, show_header: bool = True) -> None:
        self.title, self.columns, self.show_header = title, columns, show_header
        self.rows: list[tuple[str, ...]] = []

    def add_row(self, *cells: Any) -> None:
        self.rows.append(tuple(str(cell) for cell in cells))

    def print(self, console: Console) -> None:
        if console.is_terminal:
            table = Table(title=self.title, show_header=self.show_header)
            for column in self.columns:
                table.add_column(column, overflow="fold")
            for row in self.rows:
                table.add_row(*row)
            console.print(table)
            return
        from rich.text import Text

        lines = ["\t".join(self.columns)] if self.show_header else []
        lines += ["\t".join(Text.from_markup(cell).plain for cell in row) for row in self.rows]
        click.echo("\n".join(lines), err=console.stderr)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


class _Group(click.Group):
    """The command group: Ctrl-C anywhere exits with 130 (the shell's code for SIGINT), without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("slagen: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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
    table = _Table("built-in variants", ("name", "decay", "head_gate", "zero_sum", "K", "V", "hash", "description"))
    for spec in BUILTIN_SPECS.values():
        zero_sum = spec.zero_sum_decay if spec.experimental else str(spec.zero_sum).lower()
        table.add_row(spec.name, spec.decay, spec.head_gate, zero_sum, str(spec.head_dim_k),
                      str(spec.head_dim_v), spec.spec_hash, spec.description)
    table.print(Console())


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
@click.option("--package", "package_dir", default=None,
              help="A generated package: also show which config each of its ops would pick here.")
@click.option("--shape", default="8x4096x16", show_default=True, help="BxTxH problem for --package.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@user_errors
def doctor(package_dir: str | None, shape: str, as_json: bool) -> None:
    """Versions, GPU, interpreter mode and the tuning DB location.

    Example: slagen doctor --package generated/slagen_kernels --shape 2x16384x16
    """
    from . import api

    report = api.doctor(package_dir=package_dir, shape=shape)
    if as_json:
        _print_json(report)
        return
    table = _Table("slagen doctor", ("key", "value"), show_header=False)
    for key, value in report.items():
        table.add_row(key, str(value))
    table.print(Console())


@main.command()
@click.argument("specs", nargs=-1)
@click.option("--gpu", default="all", show_default=True,
              help="GPUs to ship tables for: all (every GPU in the DB), a GPU name, or auto (this one).")
@click.option("--db", "db_url", default=None, help="Tuning DB (SQLAlchemy URL); none: heuristic configs only.")
@click.option("--out", "out_dir", default="generated", show_default=True, help="Folder to write the package in.")
@click.option("--name", "package_name", default="slagen_kernels", show_default=True, help="Package name.")
@click.option("--tuning-dir", default=None, help="Build from the JSONL exports in this folder (e.g. tuning_db).")
@click.option("--no-tune", is_flag=True,
              help="Use the DB as it is. Without it, a build on a GPU with --db first tunes the variants there.")
@click.option("--compile-for", default=None,
              help="Also compile every kernel ahead of time for these GPUs (a100, h100, h200, b200; comma-separated) "
                   "and ship the binaries: the first call on such a GPU (same triton) compiles nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the build report as JSON on stdout.")
@user_errors
def build(specs: tuple[str, ...], gpu: str, db_url: str | None, out_dir: str, package_name: str,
          tuning_dir: str | None, no_tune: bool, compile_for: str | None, as_json: bool) -> None:
    """Render the variants' kernels with their tuned configs into an importable package.

    With no SPEC, builds every shipped variant.

    Example: slagen build --tuning-dir tuning_db --gpu all --out generated
    """
    from . import api
    from .spec import SHIPPED_VARIANTS

    names = list(specs) or list(SHIPPED_VARIANTS)
    if not no_tune and db_url is not None and api.doctor().get("cuda_available"):
        for name in names:  # fill the DB for this GPU first; configs already measured are reused, not re-timed
            err_console.print(f"tuning {name} on this GPU (shapes {api.BUILD_TUNE_SHAPES}) ...")
            api.tune(name, api.BUILD_TUNE_SHAPES, db_url=db_url, budget_trials=api.BUILD_TUNE_TRIALS)
    report = api.build(names, gpu=gpu, db_url=db_url, out_dir=out_dir,
                       name=package_name, tuning_dir=tuning_dir, compile_for=compile_for)
    if as_json:
        _print_json(dataclasses.asdict(report))
        return
    err_console.print(f"built [bold]{report.package_dir}[/]: {len(report.variants)} variants, "
                      f"{report.tuned_entries} tuned entries for {', '.join(report.gpus) or 'no GPU (defaults only)'}")
    for line in report.refused:
        err_console.print(f"  not used: {line}")
    for target, size in report.binaries.items():
        err_console.print(f"  compiled for {target} ({', '.join(size['gpus'])}): {size['kernels']} kernels, "
                          f"{size['bytes']} bytes ({size['bytes_per_kernel']} per kernel)")


@main.command()
@click.argument("package_dir")
@click.option("--variant", "variants", multiple=True, help="Check only these variants.")
@click.option("--no-backward", is_flag=True, help="Skip the gradient checks.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@user_errors
def check(package_dir: str, variants: tuple[str, ...], no_backward: bool, as_json: bool) -> None:
    """Import a generated package and compare every function with the reference.

    Example: slagen check generated/slagen_kernels
    """
    from . import api

    results = api.check(package_dir, variants=list(variants) or None, backward=not no_backward)
    if as_json:
        _print_json([dataclasses.asdict(r) for r in results])
    else:
        table = _Table(f"slagen check {package_dir}", ("variant", "op", "rel. error", "ok", "detail"))
        for r in results:
            table.add_row(r.variant, r.op, f"{r.max_rel_error:.2e}", "ok" if r.ok else "[red]MISMATCH[/]", r.detail)
        table.print(err_console)
    failed = [f"{r.variant}.{r.op}" for r in results if not r.ok]
    if failed:
        click.echo(f"slagen: error: mismatch against the reference: {', '.join(failed)}", err=True)
        sys.exit(1)


@main.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--arch", type=int, default=90, show_default=True,
              help="Compute capability to compile for, as an integer: 90 = H100/H200 (sm_90), 80 = A100.")
@click.option("--dtype", default="bfloat16", show_default=True, help="dtype of q, k, v (float32, bfloat16, float16).")
@click.option("--cases", default="fixed,varlen", show_default=True,
              help="Launch paths: fixed (B sequences, initial state), varlen (cu_seqlens), grouped (2 value heads "
                   "per q/k head).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("--report", is_flag=True,
              help="Also print each kernel's SASS instruction mix (MMA instructions by shape and operand type, FFMA, "
                   "local loads/stores), from the cuobjdump that ships with triton.")
@user_errors
def aot(targets: tuple[str, ...], arch: int, dtype: str, cases: str, as_json: bool, report: bool) -> None:
    """Compile kernels for a GPU that is not here: every kernel of a package, or a variant's defaults.

    Catches what Triton's CPU interpreter lets by: compiler errors, shared memory past the GPU's limit.

    Example: slagen aot generated/slagen_kernels --arch 90 --report
    """
    from . import api
    from .tuning.sass import SassMix

    def show(r) -> None:
        if not as_json:
            state = "ok" if r.fits else ("[red]TOO BIG[/]" if r.ok else "[red]ERROR[/]")
            err_console.print(f"{r.variant:>16} {r.op:<9} {r.case:<6} {r.kernel:<24} {state} "
                              f"{r.shared:>7} B smem {r.registers:>4} regs {r.spill_bytes:>5} B spilled  "
                              f"{r.error[:300]}", highlight=False, soft_wrap=True)
            if report and r.ok:
                mix = "not disassembled" if r.sass is None else SassMix(**r.sass).summary()
                err_console.print(f"{'':>16} {'':<9} {'':<6} sass: {mix}", markup=False, highlight=False,
                                  soft_wrap=True)

    results = api.aot(list(targets), arch=arch, dtype=dtype, cases=tuple(c for c in cases.split(",") if c),
                      progress=show)
    if as_json:
        _print_json([dict(dataclasses.asdict(r), fits=r.fits) for r in results])
    elif report:
        _print_sass_totals(results)
    failed = sorted({f"{r.variant}.{r.op}[{r.key}].{r.kernel}" for r in results if not r.fits})
    if failed:
        click.echo(f"slagen: error: {len(failed)} kernel(s) would not run on sm_{arch}: {', '.join(failed)}", err=True)
        sys.exit(1)
    click.echo(f"slagen aot: {len(results)} kernel launches compile for sm_{arch} and fit its shared memory", err=True)


def _print_sass_totals(results) -> None:
    """One line per variant and op: the MMA operand types of all its kernels, local memory, spills."""
    from .tuning.sass import SassMix

    groups: dict[tuple[str, str], list] = {}
    for r in results:
        if r.ok:
            groups.setdefault((r.variant, r.op), []).append(r)
    for (variant, op), rows in sorted(groups.items()):
        mixes = [SassMix(**r.sass) for r in rows if r.sass is not None]
        types = sorted({t for m in mixes for t in m.mma_types}) or ["none"]
        err_console.print(f"{variant:>16} {op:<9} MMA operands {'/'.join(types):<10} "
                          f"LDL {sum(m.ldl for m in mixes):>4} STL {sum(m.stl for m in mixes):>4} "
                          f"max spill {max(r.spill_bytes for r in rows):>5} B  ({len(rows)} launches, "
                          f"{len(rows) - len(mixes)} not disassembled)", markup=False, highlight=False,
                          soft_wrap=True)


_DB_OPTION = click.option("--db", "db_url", default=None,
                          help="Tuning DB: any SQLAlchemy URL (default: SLAGEN_DB, else a SQLite file in the cache).")


@main.command()
@click.argument("spec_name")
@click.option("--shapes", required=True, help="Comma-separated BxTxH problems, e.g. 1x128x2,2x4096x16.")
@_DB_OPTION
@click.option("--budget-trials", type=click.IntRange(min=1), default=None, help="Configs measured per search.")
@click.option("--budget-seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Wall-clock budget for the whole run.")
@click.option("--sampler", type=click.Choice(["tpe", "cmaes", "grid", "random"]), default="tpe", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes tuning one study together. On one GPU they compile candidates in parallel and "
                   "take turns to verify and time them (a lock per GPU). Several GPUs: one `slagen tune` per GPU "
                   "(CUDA_VISIBLE_DEVICES) on a shared --db.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@user_errors
def tune(spec_name: str, shapes: str, db_url: str | None, budget_trials: int | None, budget_seconds: float | None,
         sampler: str, workers: int, seed: int, as_json: bool) -> None:
    """Autotune a variant's kernels on this machine's device; every trial goes into the tuning DB.

    Example: slagen tune retnet --shapes 2x4096x16 --budget-trials 40 --db sqlite:///tuning.db
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import api
    from .spec import load_spec, parse_shapes

    from .tuning.commands import check_can_run_kernels

    load_spec(spec_name), parse_shapes(shapes)  # a mistake here is one line, before any progress bar
    check_can_run_kernels()
    if budget_trials is None and budget_seconds is None and sampler != "grid":
        budget_trials = 30
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(f"tune {spec_name}", total=None, status="")

        def listener(event) -> None:
            best = f"best {event.best_ms:.4f} ms" if event.best_ms is not None else "best -"
            failures = " ".join(f"{k}={v}" for k, v in sorted(event.failures.items())) or "no failures"
            where = f"{event.op} {event.dtype} {event.shape_bucket}".strip()
            bar.update(task, completed=event.done, total=event.total, status=f"{where}  {best}  {failures}")

        report = api.tune(spec_name, shapes, db_url=db_url, budget_trials=budget_trials,
                          budget_seconds=budget_seconds, sampler=sampler, workers=workers, seed=seed,
                          listener=listener)
    if as_json:
        _print_json(report.to_dict())
        return
    table = _Table(f"slagen tune {spec_name} ({report.elapsed_s:.1f} s, {report.sampler})",
                   ("op", "dtype", "bucket", "best ms", "trials", "best config"))
    for s in report.searches:
        best = f"{s.best_ms:.4f}" if s.best_ms is not None else "-"
        trials = " ".join(f"{k}={v}" for k, v in sorted(s.trials_by_status.items())) or "-"
        table.add_row(s.op, s.dtype, s.shape_bucket, best, trials, json.dumps(s.best_config, sort_keys=True))
    table.print(err_console)


@main.group()
def db() -> None:
    """Inspect, upgrade, export, import and merge tuning databases."""


@db.command("info")
@_DB_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON on stdout.")
@user_errors
def db_info(db_url: str | None, as_json: bool) -> None:
    """Counts, schema version and location of a tuning DB.

    Example: slagen db info --db sqlite:///tuning.db --json
    """
    from . import api

    info = api.db_info(db_url).to_dict()
    if as_json:
        _print_json(info)
        return
    table = _Table("tuning database", ("key", "value"), show_header=False)
    for key, value in info.items():
        table.add_row(key, str(value))
    table.print(Console())


@db.command("upgrade")
@_DB_OPTION
@user_errors
def db_upgrade(db_url: str | None) -> None:
    """Migrate a tuning DB to this slagen's schema, keeping every row.

    Example: slagen db upgrade --db sqlite:///old.db
    """
    from . import api

    result = api.db_upgrade(db_url)
    was = "new" if result.from_version is None else f"v{result.from_version}"
    click.echo(f"{result.url}: schema {was} -> v{result.to_version} ({result.revision})")


@db.command("export")
@click.argument("file")
@_DB_OPTION
@click.option("--device", "device_name", default=None, help="Only this GPU's records.")
@user_errors
def db_export(file: str, db_url: str | None, device_name: str | None) -> None:
    """Write every trial as JSON lines (diffable; what tuning_db/ ships).

    Example: slagen db export tuning_db/h100.jsonl --device "NVIDIA H100 80GB HBM3"
    """
    from . import api

    result = api.db_export(file, db_url, device_name=device_name)
    click.echo(f"exported {result.trials} trials to {result.path}")


@db.command("import")
@click.argument("files", nargs=-1, required=True)
@_DB_OPTION
@user_errors
def db_import(files: tuple[str, ...], db_url: str | None) -> None:
    """Load JSON-lines exports; every line is checked before anything is written.

    Example: slagen db import tuning_db/*.jsonl
    """
    from . import api

    for file in files:
        result = api.db_import(file, db_url)
        click.echo(f"{file}: {result.trials_added} trials added, {result.trials_duplicate} already present")


@db.command("merge")
@click.argument("other_url")
@_DB_OPTION
@user_errors
def db_merge(other_url: str, db_url: str | None) -> None:
    """Merge another tuning DB into this one: deterministic, nothing lost.

    Example: slagen db merge sqlite:///colleague.db --db sqlite:///mine.db
    """
    from . import api

    result = api.db_merge(other_url, db_url)
    click.echo(f"{other_url}: {result.trials_added} trials added, {result.trials_duplicate} already present")


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


@main.command()
@click.argument("spec_name")
@click.option("--shapes", default="8x4096x16", show_default=True, help="Comma-separated BxTxH problems (K, V from the spec).")
@click.option("--vs", default="fla,sdpa", show_default=True,
              help="Peers: fla, sdpa, reference, slagen_base (SLA: base kernel + torch ops), authors (ZeroS).")
@click.option("--dtype", default=None, help="bfloat16 (default on a GPU), float16 or float32.")
@click.option("--no-backward", is_flag=True, help="Time the forward only.")
@click.option("--check-seqlen", type=click.IntRange(min=1), default=2048, show_default=True,
              help="Tokens of the first and last batch row checked against the float64 reference.")
@click.option("--warmup-ms", type=click.FloatRange(min=0), default=25.0, show_default=True)
@click.option("--rep-ms", type=click.FloatRange(min=1), default=100.0, show_default=True)
@click.option("--allow-cpu", is_flag=True,
              help="Without a GPU, run through Triton's interpreter anyway (tiny shapes; tests the plumbing, times mean nothing).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@user_errors
def bench(spec_name: str, shapes: str, vs: str, dtype: str | None, no_backward: bool, check_seqlen: int,
          warmup_ms: float, rep_ms: float, allow_cpu: bool, as_json: bool) -> None:
    """Time a variant against fla, torch SDPA and the reference: ratios in one run, correctness first.

    Example: slagen bench sla_gla --shapes 8x4096x16,2x16384x16 --vs fla,sdpa,slagen_base
    """
    import os

    from . import api
    from .bench import parse_dtype, parse_peers
    from .spec import load_spec, parse_shapes

    load_spec(spec_name), parse_shapes(shapes), parse_peers(vs), parse_dtype(dtype, True)  # one line on a mistake
    if allow_cpu and "TRITON_INTERPRET" not in os.environ:
        import torch

        if not torch.cuda.is_available():  # the kernels can only run through the interpreter here
            os.environ["TRITON_INTERPRET"] = "1"
    report = api.bench(spec_name, shapes, vs=vs, dtype=dtype, allow_cpu=allow_cpu, backward=not no_backward,
                       check_seqlen=check_seqlen, warmup_ms=warmup_ms, rep_ms=rep_ms)
    if as_json:
        _print_json(report.to_dict())
    else:
        title = f"slagen bench {report.variant} ({report.dtype}, {report.device})"
        table = _Table(title, ("shape", "impl", "fwd ms", "f+b ms", "x fwd", "x f+b", "err / grad err", "MiB f / f+b",
                               "status / note"))
        for shape in report.shapes:
            for r in shape.rows:
                note = r.status if r.status == "ok" else f"[red]{r.status}[/]: {r.reason}"
                if r.status == "ok" and r.bwd_status != "ok":
                    note += f"; backward {r.bwd_status}: {r.bwd_reason}"
                table.add_row(shape.shape, r.peer, _fmt(r.fwd_ms), _fmt(r.fwdbwd_ms), _fmt(r.fwd_ratio, ".2f"),
                              _fmt(r.fwdbwd_ratio, ".2f"), f"{_fmt(r.fwd_error, '.1e')} / {_fmt(r.grad_error, '.1e')}",
                              f"{_fmt(r.peak_fwd_mib, '.0f')} / {_fmt(r.peak_fwdbwd_mib, '.0f')}", note)
        table.print(err_console)
        if not report.meaningful:
            err_console.print(f"[yellow]note:[/] {report.note}")
    failed = [f"{s.shape}: forward {r.status} {r.reason}".strip() if r.status != "ok"
              else f"{s.shape}: backward {r.bwd_status}: {r.bwd_reason}"
              for s in report.shapes for r in s.rows[:1] if r.status != "ok" or r.bwd_status in ("mismatch", "error")]
    if failed:
        click.echo(f"slagen: error: slagen's own op did not pass: {'; '.join(failed)}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
