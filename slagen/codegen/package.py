"""Emit a runtime package: rendered kernels, a dispatch table, functions and layers per variant.

The output is a pure function of (specs, templates, chosen configs): no timestamps, sorted keys, so a
rebuild from the same tuning results changes nothing. Writes are atomic: the package is assembled in
a staging folder beside the target and swapped in, over a package slagen built only (`package_files`).
Every name, description, version or device name reaches the files through `escape` only.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from .. import __version__
from ..runtime.dispatch import TABLE_FORMAT, table_checksum  # the reader owns the table's format (no torch)
from ..spec import VariantSpec
from ..spec.names import check_generated_names, check_package_name, layer_class_name
from . import escape, package_files
from .layer_names import fla_layer
from .lower import lower
from .plan import KernelConfig, KernelPlan
from .render import environment, render, template_hash
from .standalone import package_kernel_source, pyproject, python_packages, runtime_files


@dataclass(frozen=True)
class TunedChoice:
    """One table entry: on `gpu` (family `family`), shapes in `bucket` use `config` (from `trial_uid`, tuned
    under the tuning key whose stable hash is `key`: `slagen.identity.TuningKey`)."""

    gpu: str
    family: str
    bucket: str  # "<dtype>/bh<N>_t<M>" (slagen.runtime.dispatch.bucket_key)
    config: Mapping[str, Any]
    trial_uid: str = ""
    key: str = ""


@dataclass
class VariantBuild:
    """What the builder needs for one variant: its spec and, per op, the tuned choices to ship."""

    spec: VariantSpec
    choices: dict[str, list[TunedChoice]] = field(default_factory=dict)  # op -> choices


def _config_id(plan: KernelPlan, config: KernelConfig) -> str:
    text = f"{plan.op}|{template_hash(plan.template)}|{config.to_json()}"
    return f"{plan.op}_{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _variant_tables(build: VariantBuild, root: Path) -> dict[str, Any]:
    """Render every config the variant ships; return its section of tables.json."""
    spec = build.spec
    plans = lower(spec)
    configs: dict[str, Any] = {}
    ops: dict[str, Any] = {}
    uses: dict[str, list[str]] = {}  # config id -> the tuning records that chose it, for its header
    for op, plan in sorted(plans.items()):
        chosen: list[tuple[TunedChoice | None, KernelConfig]] = [(None, plan.default_config())]
        for choice in build.choices.get(op, []):
            # Configs from a tuning DB are data from elsewhere: validated before they reach a template.
            chosen.append((choice, plan.validate_config(dict(choice.config))))
        devices: dict[str, Any] = {}
        for choice, config in chosen:
            config_id = _config_id(plan, config)
            configs.setdefault(config_id, {"op": op, "plan": plan, "config": config})
            uses.setdefault(config_id, [])
            if choice is not None:
                gpu = devices.setdefault(choice.gpu, {"family": choice.family, "buckets": {}})
                gpu["buckets"][choice.bucket] = config_id
                if choice.key:  # the tuning key each entry was tuned under, by its stable hash
                    gpu.setdefault("keys", {})[choice.bucket] = choice.key
                uses[config_id].append(f"{choice.gpu} {choice.bucket} trial {choice.trial_uid or '?'}")
        ops[op] = {"default": _config_id(plan, plan.default_config()), "devices": devices}
    for config_id, entry in configs.items():
        plan, config = entry.pop("plan"), entry["config"]
        records = sorted(uses[config_id]) or ["none: the heuristic default config"]
        source = package_kernel_source(_with_records(render(plan, config), records))
        relative = f"kernels/{spec.name}_{config_id}.py"
        _write(root / relative, source)
        entry.update(config=config.as_dict(), module=relative, sha256=hashlib.sha256(source.encode()).hexdigest(),
                     template=plan.template, template_hash=template_hash(plan.template))
    return {
        "spec": json.loads(spec.canonical_json()),
        "spec_hash": spec.spec_hash,
        # the inputs the backward differentiates: the custom ops' signature needs them at import time
        "grads": list(plans["backward"].constants["GRADS"]),
        "ops": ops,
        "configs": dict(sorted(configs.items())),
        "trial_uids": sorted({c.trial_uid for cs in build.choices.values() for c in cs if c.trial_uid}),
    }


def _with_records(source: str, records: list[str]) -> str:
    """Insert the tuning records a kernel file ships for after its provenance header (the leading comments)."""
    lines = source.split("\n")
    header = 0
    while header < len(lines) and lines[header].startswith("#"):
        header += 1
    return "\n".join(lines[:header] + [escape.comment(f"tuning record: {r}") for r in records] + lines[header:])


def _render_module(template: str, **variables: Any) -> str:
    return environment().get_template(template).render(**variables)


def _check_fla_layer_names(specs: list[VariantSpec]) -> None:
    """The fla-named layer classes (`<package>.layers.<Name>`, also star-imported by the package) must be
    distinct from each other and from every other generated name; a clash names both variants."""
    from ..spec import SpecError
    from ..spec.names import generated_names

    owners = {name: f"the {what} {name!r} of variant {spec.name!r}"
              for spec in specs for what, name in generated_names(spec.name).items()}
    for spec in specs:
        named = fla_layer(spec)
        if named is None:
            continue
        mine = f"the fla layer class {named[0]!r} of variant {spec.name!r}"
        if named[0] in owners:
            raise SpecError(f"name: {mine} collides with {owners[named[0]]}; rename one of them")
        owners[named[0]] = mine


def build_package(builds: Iterable[VariantBuild], out_dir: Path, name: str,
                  finish: Optional[Callable[[Path], None]] = None) -> Path:
    """Write `out_dir/name/` atomically and return its path; refuses to replace anything slagen did not build.
    `finish(folder)` adds to the package before it is swapped in (`slagen build --compile-for`: the compiled
    kernels)."""
    builds = sorted(builds, key=lambda b: b.spec.name)
    check_package_name(name)
    check_generated_names([b.spec.name for b in builds], package=name)
    _check_fla_layer_names([b.spec for b in builds])
    if out_dir.exists() and not out_dir.is_dir():
        from ..spec import SpecError

        raise SpecError(f"--out: expected a folder, got the file {str(out_dir)!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / name
    package_files.check_replaceable(target)
    package_files.remove_stale_staging(out_dir, name)
    staging = package_files.make_staging(out_dir, name)
    try:
        variants = {build.spec.name: _variant_tables(build, staging) for build in builds}
        body = {"format": TABLE_FORMAT, "package": name, "slagen_version": __version__, "variants": variants}
        tables = {**body, "checksum": table_checksum(body)}
        _write(staging / "tables.json", json.dumps(tables, indent=1, sort_keys=True) + "\n")
        specs = [build.spec for build in builds]
        fla_layers = [dict(cls=named[0], family=named[1], variant=s.name, description=s.description)
                      for s in specs for named in [fla_layer(s)] if named is not None]
        context = dict(package=name, version=__version__, specs=[s.to_dict() for s in specs], fla_layers=fla_layers,
                       spec_hashes={s.name: s.spec_hash for s in specs},
                       layer_classes={s.name: layer_class_name(s.name) for s in specs},
                       inputs={s.name: list(s.required_inputs()) + list(s.optional_inputs()) for s in specs},
                       template_hashes={k: sorted({c["template_hash"] for c in v["configs"].values()})
                                        for k, v in variants.items()},
                       trial_uids={k: v["trial_uids"] for k, v in variants.items()})
        _write(staging / "__init__.py", _render_module("package_init.py.jinja", **context))
        _write(staging / "layers.py", _render_module("package_layers.py.jinja", **context))
        _write(staging / "kernels" / "__init__.py", escape.comment(
            f"Generated by slagen {__version__}: the rendered kernel modules of `{name}`; tables.json lists each "
            "with its config and sha256.") + "\n")
        if finish is not None:
            finish(staging)
        _write_standalone(staging, name, tables["checksum"])
        package_files.write_marker(staging, name)
        package_files.swap_in(staging, target, name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _write_standalone(root: Path, name: str, checksum: str) -> None:
    """The runtime copy and pyproject.toml that let `pip install` the package beside torch and triton alone."""
    for relative, text in runtime_files().items():
        _write(root / "_runtime" / relative, text)
    version = f"{__version__}+{checksum[:12]}"  # a local version label: two builds' contents tell apart
    data = ["tables.json"] + (["binaries/*.json", "binaries/*/*/*"] if (root / "binaries").is_dir() else [])
    _write(root / "pyproject.toml", pyproject(name, version, python_packages(root, name), {name: data}))

