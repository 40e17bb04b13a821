"""The library facade: each CLI command is a thin call into one of these functions. Never prints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from .spec import VariantSpec, load_spec


class UsageError(ValueError):
    """A request slagen cannot carry out as asked; the message says why and what to do instead."""


def _as_spec(spec: VariantSpec | str) -> VariantSpec:
    return spec if isinstance(spec, VariantSpec) else load_spec(spec)


def emit(spec: VariantSpec | str, op: str = "forward", config: Mapping[str, Any] | None = None) -> str:
    """Generated Triton source for one op of a variant (config: partial JSON over the default)."""
    from .codegen import plan_for, render

    plan = plan_for(_as_spec(spec), op)
    return render(plan, plan.validate_config(config, partial=True))


def compile(spec: VariantSpec | str, config: Mapping[str, Any] | None = None, *,
            recurrent_config: Mapping[str, Any] | None = None, backward_config: Mapping[str, Any] | None = None,
            shape: str = "8x4096x16", dtype: str = "bfloat16", db_url: str | None = None):
    """Render, compile and return a callable op `(q, k, v, ...) -> (o, final_state)`.

    `config` is for the chunked forward, `recurrent_config` for the recurrent/decode kernel,
    `backward_config` for the backward (variants that have one are differentiable and torch.compile-able);
    each is a partial mapping. An op given no config takes the tuning DB's best for this device and the
    shape bucket nearest `shape` (BxTxH) and `dtype`, when the DB (`db_url`, else SLAGEN_DB or the default
    file if it exists) has one for the current templates; otherwise the heuristic default.
    """
    from .jit import compile_op

    spec = _as_spec(spec)
    wanted = {"forward": config, "recurrent": recurrent_config, "backward": backward_config}
    if any(value is None for value in wanted.values()):
        for op, tuned in tuned_configs(spec, shape=shape, dtype=dtype, db_url=db_url).items():
            if wanted.get(op, {}) is None:
                wanted[op] = tuned
    return compile_op(spec, config=wanted["forward"], recurrent_config=wanted["recurrent"],
                      backward_config=wanted["backward"])


def tuned_configs(spec: VariantSpec, *, shape: str, dtype: str, db_url: str | None = None) -> dict[str, dict]:
    """Per op, the tuning DB's best config for this device nearest a shape and dtype (empty without a DB)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    from . import env
    from .codegen import lower
    from .runtime.dispatch import bucket_distance, bucket_key
    from .spec import ProblemShape

    url = db_url or env.default_db_url()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        return {}  # never create a database as a side effect of compiling
    from .db import TuningStore
    from .tuning.fingerprint import detect

    problem = ProblemShape.parse(shape)
    target = bucket_key(dtype, problem.batch * problem.heads, problem.seqlen)
    with TuningStore(url) as store:
        choices = _tuned_choices(store, spec, lower(spec), detect().name, [])
    return {op: dict(min(found, key=lambda c: (bucket_distance(c.bucket, target), c.bucket)).config)
            for op, found in choices.items() if found}


def describe_ops(spec: VariantSpec | str) -> dict[str, Any]:
    """Each op of a variant with its template, template hash, tunable axes and default config."""
    from .codegen import describe, lower

    return {op: describe(plan) for op, plan in lower(_as_spec(spec)).items()}


def doctor(package_dir: str | None = None, shape: str = "8x4096x16") -> dict[str, Any]:
    """What this machine offers slagen: versions, GPU, interpreter mode, tuning DB location, and for a
    generated package what each op would select here for a problem shape."""
    import platform

    from . import __version__, env

    report: dict[str, Any] = {"slagen": __version__, "python": platform.python_version()}
    try:
        import torch

        report["torch"] = torch.__version__
        report["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            report["gpu"] = torch.cuda.get_device_name()
            report["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    except ImportError:
        report["torch"] = "not installed"
    try:
        import triton

        report["triton"] = triton.__version__
    except ImportError:
        report["triton"] = "not installed"
    report["interpreter_mode"] = env.interpreter_mode()
    report["check_values"] = env.check_values()  # SLAGEN_CHECK_VALUES: kernels check input values like the reference
    report["cache_dir"] = str(env.cache_dir())
    report["tuning_db"] = env.default_db_url()
    if package_dir is not None:
        from .runtime.package import KernelPackage
        from .spec import ProblemShape

        problem = ProblemShape.parse(shape)
        package = KernelPackage(_package_root(package_dir))
        report["package_gpu"] = f"{package.gpu.name} ({package.gpu.family})" if package.gpu else "none (CPU)"
        report["package_selection"] = package.selection(problem.batch, problem.seqlen, problem.heads)
        from .runtime.binaries import shipped_report

        report["package_binaries"] = shipped_report(package.root)
    return report


def _package_root(package_dir: str):
    from pathlib import Path

    root = Path(package_dir)
    if not (root / "tables.json").is_file():
        raise FileNotFoundError(f"--package: {package_dir!r} is not a generated package (no tables.json)")
    return root


# Shapes and budget a `slagen build` on a GPU tunes before packaging (fla's common training shapes).
BUILD_TUNE_SHAPES = "8x4096x16,2x16384x16,4x2048x16"
BUILD_TUNE_TRIALS = 24


# --- build and check ------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildReport:
    package_dir: str
    variants: list[str]
    gpus: list[str]  # GPUs with tuned tables in the package
    tuned_entries: int  # table entries taken from the tuning DB
    refused: list[str]  # DB records not used, and why (stale template, invalid config)
    binaries: dict[str, Any] = dataclasses.field(default_factory=dict)  # per target: kernels, bytes (--compile-for)


def _tuned_choices(store, spec: VariantSpec, plans: dict, gpu: str, refused: list[str]) -> dict[str, list]:
    """The store's best entries for a variant's ops, for the GPUs selected by `gpu` (all, or one name)."""
    from .codegen.package import TunedChoice
    from .codegen.plan import ConfigError
    from .codegen.render import template_hash

    choices: dict[str, list] = {}
    by_key: dict[tuple[str, str, str], Any] = {}
    for best in store.best_configs(spec_hash=spec.spec_hash):
        trial = best.trial
        op, device = trial.kernel.plan_name.rsplit(".", 1)[-1], trial.device  # plan names are "<variant>.<op>"
        if op not in plans or (gpu != "all" and device.name != gpu):
            continue
        if trial.kernel.template_hash != template_hash(plans[op].template):
            refused.append(f"{spec.name}.{op} on {device.name} {trial.shape_bucket}: tuned for template "
                           f"{trial.kernel.template_hash}, the template is now {template_hash(plans[op].template)}")
            continue
        try:
            plans[op].validate_config(best.config)
        except ConfigError as err:
            refused.append(f"{spec.name}.{op} on {device.name} {trial.shape_bucket}: {err}")
            continue
        key = (op, device.name, f"{trial.dtype}/{trial.shape_bucket}")
        # Several fingerprints of one GPU (drivers, triton versions): keep the fastest, ties by uid.
        rank = (best.median_ms, trial.trial_uid)
        if key not in by_key or rank < by_key[key][0]:
            by_key[key] = (rank, TunedChoice(device.name, device.family, key[2], best.config, trial.trial_uid,
                                              trial.group.stable_hash()))
    for (op, _, _), (_, choice) in sorted(by_key.items()):
        choices.setdefault(op, []).append(choice)
    return choices


def build(specs: list[VariantSpec | str], *, gpu: str = "all", db_url: str | None = None,
          out_dir: str = "generated", name: str = "slagen_kernels", tuning_dir: str | None = None,
          compile_for: str | None = None) -> BuildReport:
    """Render the variants' kernels with the tuned configs of the DB into `out_dir/name/`.

    `gpu`: "all" GPUs in the DB, one GPU name, or "auto" (this machine's GPU). Without a DB (or with an
    empty one) the package carries the heuristic default configs only, and works everywhere.
    `tuning_dir`: a folder of JSONL exports (like the shipped `tuning_db/`) loaded into a temporary DB
    and built from, instead of `db_url`. `compile_for` ("h100,h200"): also compile every kernel the tables
    select for those GPUs ahead of time and ship the binaries (`slagen.tuning.ship`).
    """
    from pathlib import Path

    if tuning_dir is not None:
        if db_url is not None:
            from .spec import SpecError

            raise SpecError("--tuning-dir: give either --db or --tuning-dir, not both")
        return _build_from_exports(specs, Path(tuning_dir), gpu=gpu, out_dir=out_dir, name=name,
                                   compile_for=compile_for)

    from .codegen import lower
    from .codegen.package import VariantBuild, build_package
    from .spec import SpecError, load_specs

    resolved = [s for s in specs if isinstance(s, VariantSpec)]
    resolved += load_specs([s for s in specs if not isinstance(s, VariantSpec)])
    names = [s.name for s in resolved]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:  # they would share function names and table entries in the package
        raise SpecError(f"name: duplicate variant name {duplicates[0]!r} in one build")
    if gpu == "auto":
        gpu = _current_gpu_name()
    refused: list[str] = []
    builds = [VariantBuild(spec) for spec in resolved]
    if db_url is None and gpu != "all":
        raise UsageError(f"--gpu: {gpu!r} selects tuning records, but no tuning DB is given (--db or --tuning-dir); "
                         "without one the package has the default configs only (use --gpu all)")
    if db_url is not None:
        from .db import TuningStore

        with TuningStore(db_url, create=False) as store:  # a build only reads the DB
            if gpu != "all":
                known = sorted({t.device.name for t in store.trials(device_name=gpu)[:1]}) or \
                    sorted({b.trial.device.name for b in store.best_configs()})
                if gpu not in known:
                    raise UsageError(f"--gpu: no tuning records for a GPU named {gpu!r}; the DB has "
                                     f"{', '.join(repr(n) for n in known) or 'none'} (or use --gpu all)")
            for item in builds:
                item.choices = _tuned_choices(store, item.spec, lower(item.spec), gpu, refused)
    shipped: dict[str, Any] = {}
    finish = None
    if compile_for:
        from .tuning.ship import parse_targets, ship_binaries

        parse_targets(compile_for)  # a bad name fails before anything is rendered

        def finish(root: Path) -> None:
            shipped.update(ship_binaries(root, name, compile_for))
    path = build_package(builds, Path(out_dir), name, finish)
    gpus = sorted({c.gpu for b in builds for cs in b.choices.values() for c in cs})
    entries = sum(len(cs) for b in builds for cs in b.choices.values())
    return BuildReport(str(path), [b.spec.name for b in builds], gpus, entries, refused, shipped)


def _build_from_exports(specs, tuning_dir, **kwargs) -> BuildReport:
    import tempfile
    from pathlib import Path

    if not tuning_dir.is_dir():
        raise FileNotFoundError(f"--tuning-dir: {str(tuning_dir)!r} is not a folder")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'tuning.db'}"
        db_upgrade(url)  # created even when the folder holds no export
        for export in sorted(tuning_dir.glob("*.jsonl")):
            db_import(str(export), url)
        return build(specs, db_url=url, **kwargs)


def _current_gpu_name() -> str:
    import torch

    from .spec import SpecError

    if not torch.cuda.is_available():
        raise SpecError("--gpu: 'auto' needs a CUDA GPU and none is visible; use --gpu all or a GPU name")
    return torch.cuda.get_device_name()


@dataclass(frozen=True)
class CheckResult:
    variant: str
    op: str
    ok: bool
    max_rel_error: float  # relative RMS error of outputs and final state against the float64 reference
    detail: str = ""


def import_package(package_dir: str):
    """Import a generated package from its folder (under its own name, in this process)."""
    from pathlib import Path

    from .runtime.loader import import_file

    root = Path(package_dir).resolve()
    if not (root / "__init__.py").is_file():
        raise FileNotFoundError(f"DIR: {package_dir!r} is not a generated package (no __init__.py)")
    return import_file(root / "__init__.py", root.name, package=True)


def check(package_dir: str, *, variants: list[str] | None = None, seqlen: int = 40, heads: int = 2,
          tolerance: float = 2e-3, backward: bool = True) -> list[CheckResult]:
    """Run every function of a generated package on fresh random inputs against the float64 reference:
    outputs and final state of the chunked and recurrent paths, and (`backward`) the gradient of every
    input the package's backward differentiates except the initial state (the kernel tests cover that),
    against autograd through the reference. Input values are checked as the reference checks them
    (SLAGEN_CHECK_VALUES is on for the run)."""
    import os

    import torch

    from . import env

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not env.interpreter_mode():
        raise UsageError("check: no CUDA GPU and TRITON_INTERPRET is not set, so the package would run the "
                         "reference and compare it with itself; run on a GPU or with TRITON_INTERPRET=1")
    package = import_package(package_dir)
    results = []
    previous = os.environ.get("SLAGEN_CHECK_VALUES")
    os.environ["SLAGEN_CHECK_VALUES"] = "1"  # the package checks input values as the reference does
    try:
        _check_variants(package, variants, seqlen, heads, tolerance, backward, device, results)
    finally:
        if previous is None:
            os.environ.pop("SLAGEN_CHECK_VALUES", None)
        else:
            os.environ["SLAGEN_CHECK_VALUES"] = previous
    return results


def _check_variants(package, variants, seqlen, heads, tolerance, backward, device, results) -> None:
    import torch

    from .reference import attention, make_inputs

    for index, (name, spec) in enumerate(sorted(package.SPECS.items())):
        if variants and name not in variants:
            continue
        inputs = make_inputs(spec, 2, seqlen, heads, dtype=torch.float64, seed=1000 + index,
                             with_initial_state=spec.initial_state)
        expected = attention(spec, **inputs, output_final_state=True)
        for op, fn in (("forward", getattr(package, name)), ("recurrent", getattr(package, f"{name}_recurrent"))):
            cast = {k: _to(v, device) for k, v in inputs.items()}
            got = fn(**cast, output_final_state=True)
            error = _relative_error(got, expected)
            results.append(CheckResult(name, op, bool(error <= tolerance), error))
        grads = package._PACKAGE.table.data["variants"][name].get("grads", [])
        if backward and grads:
            error, detail = _gradient_error(spec, getattr(package, name), inputs, grads, device)
            results.append(CheckResult(name, "backward", bool(error <= tolerance), error, detail))


def _gradient_error(spec, fn, inputs: dict, grads: list[str], device) -> tuple[float, str]:
    """Worst relative error over the gradients of `sum(o * do)` that the kernels return."""
    import torch

    from .reference import attention

    names = [n for n in grads if n != "initial_state" and torch.is_tensor(inputs.get(n))]
    ref = {k: (v.clone().requires_grad_() if k in names else v) for k, v in inputs.items()}
    o_ref, _ = attention(spec, **ref)
    do = torch.randn(o_ref.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    want = torch.autograd.grad((o_ref * do).sum(), [ref[n] for n in names])
    mine = {k: (_to(v, device).requires_grad_() if k in names else _to(v, device)) for k, v in inputs.items()}
    o, _ = fn(**mine)
    got = torch.autograd.grad((o * _to(do, device)).sum(), [mine[n] for n in names])
    errors = {n: _relative_error(g, w) for n, g, w in zip(names, got, want)}
    worst = max(errors, key=errors.get)
    return errors[worst], f"worst gradient: {worst}"


def _to(value, device):
    import torch

    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(device=device, dtype=torch.float32).contiguous()
    return value.to(device) if hasattr(value, "to") else value


def _relative_error(got, expected) -> float:
    import torch

    def flat(x):
        if isinstance(x, (tuple, list)):
            return torch.cat([flat(y) for y in x if y is not None])
        return x.detach().double().cpu().reshape(-1)

    a, b = flat(got), flat(expected)
    if not torch.isfinite(a).all():
        return float("inf")
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def aot(targets: list[str], *, arch: int = 90, dtype: str = "bfloat16", cases: tuple[str, ...] = ("fixed", "varlen"),
        progress=None) -> list:
    """Compile kernels for `sm_<arch>` on this machine, without that GPU (`slagen.tuning.aot`): every kernel
    module of a generated package (a target that is a package folder), or the default config of every op of
    a variant (a target that is a variant name or spec file). Returns `slagen.tuning.aot.AotResult`s: compile
    errors and shared memory beyond the target's per-block limit are what a GPU run would hit first."""
    from pathlib import Path

    import torch

    from .tuning import aot as aot_mod

    if arch not in aot_mod.SHARED_LIMITS:
        raise UsageError(f"--arch: expected one of {sorted(aot_mod.SHARED_LIMITS)}, got {arch}")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise UsageError(f"--dtype: expected float32, bfloat16 or float16, got {dtype!r}")
    bad = [c for c in cases if c not in aot_mod.ALL_CASES]
    if bad or not cases:
        raise UsageError(f"--cases: expected a comma-separated subset of {','.join(aot_mod.ALL_CASES)}, got {cases}")
    sources = []
    for target in targets:
        root = Path(target)
        if (root / "tables.json").is_file():
            sources.extend(_package_sources(root))
        else:
            sources.extend(_default_sources(_as_spec(target)))
    return aot_mod.check_sources(sources, arch, getattr(torch, dtype), tuple(cases), progress)


def _package_sources(root) -> list:
    from .runtime.dispatch import DispatchTable
    from .tuning.aot import KernelSource

    table = DispatchTable.load(root / "tables.json")  # checksums verified
    out = []
    for variant in table.variants():
        data = table.data["variants"][variant]
        spec = VariantSpec.from_dict(data["spec"])
        for key, entry in sorted(data["configs"].items()):
            out.append(KernelSource(variant, spec, entry["op"], key, (root / entry["module"]).read_text()))
    return out


def _default_sources(spec: VariantSpec) -> list:
    from .codegen import lower, render
    from .tuning.aot import KernelSource

    return [KernelSource(spec.name, spec, op, "default", render(plan, plan.validate_config(None, partial=True)))
            for op, plan in lower(spec).items()]


# --- tuning and the tuning database ---------------------------------------------------------------

def tune(spec: str, shapes: str, *, db_url: str | None = None, budget_trials: int | None = None,
         budget_seconds: float | None = None, sampler: str = "tpe", workers: int = 1, seed: int = 0,
         listener=None):
    """Tune a variant for `BxTxH,...` shapes on this machine's device into the tuning DB."""
    from .tuning.commands import run_tune

    return run_tune(spec, shapes, db_url, budget_trials, budget_seconds, sampler, workers, seed, listener)


def db_info(db_url: str | None = None):
    from .db.commands import db_info as info

    return info(db_url)


def db_upgrade(db_url: str | None = None):
    from .db.commands import db_upgrade as upgrade

    return upgrade(db_url)


def db_export(path: str, db_url: str | None = None, *, device_name: str | None = None):
    from .db.commands import db_export as export

    return export(path, db_url, device_name=device_name)


def db_import(path: str, db_url: str | None = None):
    from .db.commands import db_import as import_

    return import_(path, db_url)


def db_merge(other_url: str, db_url: str | None = None):
    from .db.commands import db_merge as merge

    return merge(other_url, db_url)


# --- benchmarks ------------------------------------------------------------------------------------------

def bench(spec: VariantSpec | str, shapes: str = "8x4096x16", *, vs: str | list[str] | None = None,
          dtype: str | None = None, allow_cpu: bool = False, backward: bool = True, check_seqlen: int = 2048,
          grad_check_seqlen: int = 256, warmup_ms: float = 25.0, rep_ms: float = 100.0, seed: int = 0):
    """slagen's compiled op against peers (`vs`: fla, sdpa, reference, slagen_base, authors) on `BxTxH`
    shapes, in one run: correctness against the float64 reference first, then forward and
    forward+backward medians and peak memory (`slagen.bench.BenchReport`). Needs a CUDA GPU unless
    `allow_cpu` (Triton's interpreter, tiny shapes: the plumbing only, times mean nothing)."""
    from .bench import run_bench

    return run_bench(_as_spec(spec), shapes, vs=vs, dtype=dtype, allow_cpu=allow_cpu, backward=backward,
                     check_seqlen=check_seqlen, grad_check_seqlen=grad_check_seqlen, warmup_ms=warmup_ms,
                     rep_ms=rep_ms, seed=seed, compile_op=compile)
