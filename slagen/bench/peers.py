"""The implementations `slagen bench` compares: slagen's op and its peers, each `fn(inputs) -> o`.

fla signatures as in fla-core 0.6.0 (`fla/ops/simple_gla/chunk.py`, `fla/ops/gla/chunk.py`,
`fla/ops/gated_delta_rule/chunk.py`), called with keywords; `[B, T, H, D]`; scale passed explicitly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ..spec import VariantSpec
from .results import Unavailable

@dataclass(frozen=True)
class _Impl:
    impl: str
    fn: Callable[[dict], Any]  # inputs -> o [B, T, H, V]
    function: str = "attention"  # what it computes: "attention" (the spec's) or "softmax" (SDPA)
    note: str = ""


@dataclass(frozen=True)
class _Context:
    spec: VariantSpec
    dtype: Any
    dtype_name: str
    device: Any
    backward: bool
    check_seqlen: int
    grad_check_seqlen: int
    warmup_ms: float
    rep_ms: float
    seed: int
    # `compile_op(spec, shape=, dtype=) -> op`: slagen's compiler, handed in by the caller (`slagen.compile`),
    # so the bench never imports the facade that imports it
    compile_op: Optional[Callable[..., Any]] = None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def _guard(build: Callable[[], _Impl]) -> Callable[[], _Impl]:
    """Build an implementation once (lazily, at its first shape); remember a failure as Unavailable."""
    state: dict[str, Any] = {}

    def get() -> _Impl:
        if "impl" not in state:
            try:
                state["impl"] = build()
            except Unavailable as err:
                state["impl"] = err
            except Exception as err:  # noqa: BLE001 - a peer that fails to build is reported, never fatal
                state["impl"] = Unavailable(f"could not be built: {_short(err)}")
        if isinstance(state["impl"], Unavailable):
            raise state["impl"]
        return state["impl"]

    return get


def _call_kwargs(inputs: dict) -> dict:
    return {name: value for name, value in inputs.items() if name not in ("q", "k", "v")}


def _compiler(ctx: _Context) -> Callable[..., Any]:
    if ctx.compile_op is None:
        raise Unavailable("no compile_op was given (pass slagen.compile)")
    return ctx.compile_op


def _slagen_impl(ctx: _Context, op=None, *, shape: str = "8x4096x16") -> _Impl:
    """slagen's op for one benchmarked shape: `op`, else `ctx.compile_op`'s (`slagen.compile`: the tuning
    DB's configs for the shape's bucket and dtype)."""
    if op is None:
        op = _compiler(ctx)(ctx.spec, shape=shape, dtype=ctx.dtype_name)

    def fn(x: dict):
        return op(x["q"], x["k"], x["v"], **_call_kwargs(x))[0]

    configs = getattr(op, "configs", {})
    return _Impl("slagen.compile", fn, note=f"configs {dict(configs)}" if configs else "")


# fla's kernels are Triton on CUDA; tests set this False to run the mapping against a CPU stand-in for fla.
FLA_NEEDS_CUDA = True


def _needs_cuda(ctx: _Context, what: str) -> None:
    if FLA_NEEDS_CUDA and not ctx.cuda:
        raise Unavailable(f"{what} needs a CUDA GPU")


def _import_fla(path: str, name: str):
    import importlib

    try:
        module = importlib.import_module(path)
    except ImportError as err:
        raise Unavailable(f"fla is not installed ({_short(err)}); pip install fla-core, or carry its wheel "
                          "(benchmarks/README.md)") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise Unavailable(f"this fla ({fla_version()}) has no {path}.{name}") from None


def _l2norm(x):
    from ..reference.prepare import l2norm

    return l2norm(x.float()).to(x.dtype)


def _epilogue(spec: VariantSpec, o, x: dict):
    """The torch ops after a base kernel: per-head RMSNorm (fp32), then the SLA read gate; back to v's dtype."""
    import torch

    from ..reference.prepare import head_gate_weights, rms_norm

    if spec.output_norm == "none" and not spec.uses_read_gate:
        return o
    out = o.float()
    if spec.output_norm == "rms":
        out = rms_norm(out, x.get("norm_weight"), spec.norm_eps)
    if spec.uses_read_gate:
        out = out * head_gate_weights(spec, x["read_logits"], torch.float32)[..., None]
    return out.to(x["v"].dtype)


def _prologue(spec: VariantSpec, x: dict, l2norm_in_torch: bool) -> dict:
    """q, k, beta after the torch ops before a base kernel: L2 norm (when the kernel won't), write gate."""
    import torch

    from ..reference.prepare import head_gate_weights

    x = dict(x)
    if l2norm_in_torch:
        x["q"], x["k"] = _l2norm(x["q"]), _l2norm(x["k"])
    if spec.uses_write_gate:
        pi = head_gate_weights(spec, x["write_logits"], torch.float32)
        if spec.decay == "delta":
            x["beta"] = x["beta"] * pi
        else:
            x["k"] = (x["k"].float() * pi[..., None]).to(x["k"].dtype)
    return x


def _has_gates(spec: VariantSpec) -> bool:
    return spec.head_gate != "none" or spec.output_norm != "none"


def _fla_impl(ctx: _Context) -> _Impl:
    spec = ctx.spec
    if spec.zero_sum:
        if spec.experimental:
            raise Unavailable("no fla form for decayed ZeroS (experimental in slagen, not in the paper)")
        return _fla_zeros_impl(ctx)
    _needs_cuda(ctx, "fla")
    scale = spec.head_dim_k ** -0.5  # slagen's default and fla's (K^-0.5)
    if spec.decay in ("none", "fixed", "scalar"):
        chunk_simple_gla = _import_fla("fla.ops.simple_gla", "chunk_simple_gla")
        what = {"none": "chunk_simple_gla (no gates)", "fixed": "chunk_simple_gla(g_gamma=)",
                "scalar": "chunk_simple_gla(g=)"}[spec.decay]

        def base(x):
            return chunk_simple_gla(q=x["q"], k=x["k"], v=x["v"], g=x.get("g"), g_gamma=x.get("g_gamma"),
                                    scale=scale, output_final_state=False)[0]
        impl = f"fla.ops.simple_gla.{what}"
    elif spec.decay == "vector":
        chunk_gla = _import_fla("fla.ops.gla", "chunk_gla")

        def base(x):
            return chunk_gla(q=x["q"], k=x["k"], v=x["v"], g=x["g"], scale=scale, output_final_state=False)[0]
        impl = "fla.ops.gla.chunk_gla"
    else:  # delta
        chunk_gated_delta_rule = _import_fla("fla.ops.gated_delta_rule", "chunk_gated_delta_rule")

        def base(x):
            # beta in q's dtype, as fla's GatedDeltaNet layer and tests pass it; g stays fp32
            return chunk_gated_delta_rule(q=x["q"], k=x["k"], v=x["v"], g=x["g"], beta=x["beta"].to(x["q"].dtype),
                                          scale=scale, output_final_state=False,
                                          use_qk_l2norm_in_kernel=spec.qk_l2norm)[0]
        impl = f"fla.ops.gated_delta_rule.chunk_gated_delta_rule(use_qk_l2norm_in_kernel={spec.qk_l2norm})"
    l2norm_in_torch = spec.qk_l2norm and spec.decay != "delta"

    def fn(x):
        y = _prologue(spec, x, l2norm_in_torch)
        return _epilogue(spec, base(y), y)

    parts = (["L2 norm"] if l2norm_in_torch else []) + (["write gate"] if spec.uses_write_gate else [])
    after = (["RMSNorm"] if spec.output_norm == "rms" else []) + (["softmax over heads x"] if spec.uses_read_gate else [])
    if parts or after:
        impl = " + ".join([f"torch {', '.join(parts)}"] * bool(parts) + [impl] + [f"torch {', '.join(after)}"] * bool(after))
    return _Impl(impl, fn)


def _zeros_terms(spec: VariantSpec, x: dict):
    """ZeroS in its linear-attention form, fp32 `[B, T, H]` terms: q̂, k̂, e^{s−m}, s, α, β, γ with one max m
    per sequence and head (detached: α·e^{s−m} does not depend on it)."""
    import torch

    q, k = x["q"].float(), x["k"].float()
    if spec.qk_l2norm:
        from ..reference.prepare import l2norm

        q, k = l2norm(q), l2norm(k)
    s, sig1, sigh = (x[n].float() for n in ("zs_logits", "zs_gate1", "zs_gateh"))
    m = s.detach().amax(dim=1, keepdim=True)
    e = torch.exp(s - m)
    E = e.cumsum(1)
    P = s.cumsum(1)
    n = torch.arange(1, s.shape[1] + 1, device=s.device, dtype=s.dtype).view(1, -1, 1)
    alpha = sigh / E
    beta = (sig1 - sigh) / n
    gamma = -(beta * P + sigh) / n
    return q, k, e, s, alpha, beta, gamma


def _zeros_scale(spec: VariantSpec) -> float:
    from ..runtime.validate import default_scale

    return default_scale(spec)


def _fla_zeros_impl(ctx: _Context) -> _Impl:
    _needs_cuda(ctx, "fla")
    spec = ctx.spec
    chunk_simple_gla = _import_fla("fla.ops.simple_gla", "chunk_simple_gla")
    scale = _zeros_scale(spec)

    def fn(x):
        import torch

        q, k, e, s, alpha, beta, gamma = _zeros_terms(spec, x)
        dt = x["q"].dtype
        q3 = torch.cat([alpha[..., None] * q, beta[..., None] * q, gamma[..., None] * q], dim=-1).to(dt)
        k3 = torch.cat([e[..., None] * k, s[..., None] * k, k], dim=-1).to(dt)
        o = chunk_simple_gla(q=q3, k=k3, v=x["v"], scale=scale, output_final_state=False)[0]
        return _epilogue(spec, o.to(x["v"].dtype), x)

    return _Impl("torch ZeroS terms + fla.ops.simple_gla.chunk_simple_gla on 3K-wide q~, k~ (linear form)", fn,
                 note="the order a fused ZeroS kernel should reach")


def _authors_impl(ctx: _Context) -> _Impl:
    spec = ctx.spec
    if not spec.zero_sum:
        raise Unavailable("the authors' formulation is ZeroS's: only for zero_sum variants")
    if spec.experimental:
        raise Unavailable("no authors' formulation for decayed ZeroS (experimental in slagen, not in the paper)")
    scale = _zeros_scale(spec)

    def fn(x):
        import torch

        q, k, e, s, alpha, beta, gamma = _zeros_terms(spec, x)
        kv = k[..., :, None] * x["v"].float()[..., None, :]  # [B, T, H, K, V]: memory grows with T·K·V
        F = (e[..., None, None] * kv).cumsum(1)
        G = (s[..., None, None] * kv).cumsum(1)
        Hs = kv.cumsum(1)
        mix = alpha[..., None, None] * F + beta[..., None, None] * G + gamma[..., None, None] * Hs
        o = torch.einsum("bthk,bthkv->bthv", q, mix) * scale
        return _epilogue(spec, o.to(x["v"].dtype), x)

    return _Impl("ZeroS authors' formulation: prefix sums of per-token K×V products (torch, fp32)", fn)


def _sdpa_impl(ctx: _Context) -> _Impl:
    import torch.nn.functional as F

    def fn(x):
        q, k, v = (x[n].transpose(1, 2) for n in ("q", "k", "v"))
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)

    return _Impl("torch.nn.functional.scaled_dot_product_attention(is_causal=True)", fn, function="softmax",
                 note="softmax attention: a different function, for the crossover; checked against float64 softmax")


def _reference_impl(ctx: _Context) -> _Impl:
    from ..reference import attention

    spec = ctx.spec

    def fn(x):
        return attention(spec, x["q"], x["k"], x["v"], **_call_kwargs(x), method="chunked")[0]

    return _Impl("slagen.reference.attention(method='chunked')", fn)


def _slagen_base_impl(ctx: _Context) -> _Impl:
    spec = ctx.spec
    if not _has_gates(spec):
        raise Unavailable("no head gate or fused norm: the base variant is the variant itself")
    l2norm_in_torch = spec.qk_l2norm and spec.decay != "delta" and not spec.zero_sum and spec.uses_write_gate
    base_spec = dataclasses.replace(spec, name=f"{spec.name}_base"[:60], head_gate="none", gate_temperature=1.0,
                                    gate_scale="none", output_norm="none",
                                    qk_l2norm=spec.qk_l2norm and not l2norm_in_torch)
    op = _compiler(ctx)(base_spec)
    base_names = set(base_spec.required_inputs())

    def fn(x):
        y = _prologue(spec, x, l2norm_in_torch)
        extra = {n: y[n] for n in base_names}
        o = op(y["q"], y["k"], y["v"], **extra)[0]
        return _epilogue(spec, o, y)

    return _Impl(f"slagen.compile({base_spec.name}: decay={spec.decay}) + torch RMSNorm/head gate", fn)


PEER_BUILDERS: dict[str, Callable[[_Context], _Impl]] = {
    "fla": _fla_impl, "sdpa": _sdpa_impl, "reference": _reference_impl, "slagen_base": _slagen_base_impl,
    "authors": _authors_impl,
}



def fla_version() -> Optional[str]:
    from importlib import metadata

    for dist in ("fla-core", "flash-linear-attention"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    try:
        import fla  # noqa: F401

        return getattr(fla, "__version__", "unknown")
    except ImportError:
        return None


def _short(err: BaseException, limit: int = 300) -> str:
    text = f"{type(err).__name__}: {err}".strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
