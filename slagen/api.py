"""The library facade: each CLI command is a thin call into one of these functions. Never prints."""

from __future__ import annotations

from typing import Any, Mapping

from .spec import VariantSpec, load_spec


def _as_spec(spec: VariantSpec | str) -> VariantSpec:
    return spec if isinstance(spec, VariantSpec) else load_spec(spec)


def emit(spec: VariantSpec | str, op: str = "forward", config: Mapping[str, Any] | None = None) -> str:
    """Generated Triton source for one op of a variant (config: partial JSON over the default)."""
    from .codegen import plan_for, render

    plan = plan_for(_as_spec(spec), op)
    return render(plan, plan.validate_config(config, partial=True))


def compile(spec: VariantSpec | str, config: Mapping[str, Any] | None = None, *,
            recurrent_config: Mapping[str, Any] | None = None):
    """Render, compile and return a callable op `(q, k, v, ...) -> (o, final_state)`.

    `config` is for the chunked forward, `recurrent_config` for the recurrent/decode kernel; each is a
    partial mapping over the heuristic default.
    """
    from .runtime.op import compile_op

    return compile_op(_as_spec(spec), config=config, recurrent_config=recurrent_config)


def describe_ops(spec: VariantSpec | str) -> dict[str, Any]:
    """Each op of a variant with its template, template hash, tunable axes and default config."""
    from .codegen import describe, lower

    return {op: describe(plan) for op, plan in lower(_as_spec(spec)).items()}


def doctor() -> dict[str, Any]:
    """What this machine offers slagen: versions, GPU, interpreter mode, tuning DB location."""
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
    report["cache_dir"] = str(env.cache_dir())
    report["tuning_db"] = env.default_db_url()
    return report
