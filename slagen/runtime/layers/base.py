"""What every fla-compatible layer shares: the forward contract, the kernel choice by length, padding, the
cache, the short convolutions, the SLA head-gate projections and the per-head norm + output gate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

import torch
from torch import nn

from .cache import layer_state, save_layer_state
from .padding import check_attention_mask, repad, unpad
from .parts import RMSNorm, ShortConvolution

RECURRENT_BELOW = 65  # fla's layers take the fused recurrent kernel for inputs of at most 64 tokens


@dataclass
class Step:
    """One forward call, after unpadding: the tokens `x` ([B, T, hidden], or [1, tokens, hidden] packed)."""

    x: torch.Tensor
    kind: str  # "forward" (chunked) or "recurrent"
    last: Optional[dict]  # this layer's cache entry, or None
    use_cache: bool
    cu_seqlens: Optional[torch.Tensor]
    attention_mask: Optional[torch.Tensor]
    past_key_values: Any
    q_len: int
    cp_context: Any = None  # slagen.cp.context(...): this rank's slice of a sequence split across a group


def refuse(argument: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"{argument}: expected {allowed}, got {value!r}")


class FlaLayer(nn.Module):
    """Subclasses set `kernels` (a provider, see `kernels.py`), build their modules in `__init__` (calling
    `bind_kernels` once the head dims are known) and implement `mix(step) -> (y, states to cache)`."""

    kernels: ClassVar[Any]
    CONTEXT_PARALLEL: ClassVar[bool] = True  # False where the layer itself mixes tokens beyond the kernel
    MODES: ClassVar[tuple[str, ...]] = ("chunk", "fused_recurrent")

    def check_mode(self, mode: str) -> None:
        if mode not in self.MODES:
            raise refuse("mode", mode, f"one of {self.MODES}")
        self.mode = mode

    def bind_kernels(self, head_k_dim: int, head_v_dim: int, norm_eps: float) -> None:
        self.kernel = self.kernels.resolve(type(self).__name__, head_k_dim, head_v_dim, norm_eps)
        self.spec = self.kernel.spec

    def add_head_gates(self, hidden_size: int, heads: int) -> None:
        """SLA: `hidden -> H` gate logits, zero at init: a uniform softmax (times H with gate_scale = "heads")
        leaves the base layer's output unchanged, so an fla checkpoint loads with strict=False and trains on."""
        wanted_gates = (("read_gate_proj", self.spec.uses_read_gate), ("write_gate_proj", self.spec.uses_write_gate))
        for name, wanted in wanted_gates:
            if wanted:
                proj = nn.Linear(hidden_size, heads, bias=False)
                nn.init.zeros_(proj.weight)
                setattr(self, name, proj)

    def kernel_kind(self, q_len: int) -> str:
        """As fla: chunked while training with autograd, recurrent for short inputs, else the `mode` asked for."""
        if torch.is_grad_enabled():
            return "forward"
        if q_len < RECURRENT_BELOW or self.mode == "fused_recurrent":
            return "recurrent"
        return "forward"

    def forward(self, hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                past_key_values: Any = None, use_cache: Optional[bool] = False,
                output_attentions: Optional[bool] = False, **kwargs: Any):
        B, T, _ = hidden_states.shape
        check_attention_mask(attention_mask, B, T)
        last = layer_state(self, past_key_values)
        cp_context = kwargs.get("cp_context")
        if cp_context is not None:
            self.check_context_parallel(attention_mask, use_cache, B)
            if kwargs.get("cu_seqlens") is not None:
                raise refuse("cu_seqlens", "offsets", "None under cp_context (the context holds the global ones)")
        x, indices, cu_seqlens = unpad(hidden_states, kwargs.get("cu_seqlens"), attention_mask, T)
        kind = "forward" if cp_context is not None else self.kernel_kind(T)
        step = Step(x, kind, last, bool(use_cache), cu_seqlens, attention_mask, past_key_values, T, cp_context)
        y, states = self.mix(step)
        save_layer_state(self, past_key_values, offset=T, **states)
        return repad(y, indices, B, T), None, past_key_values

    def mix(self, step: Step) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def check_context_parallel(self, attention_mask, use_cache, batch: int) -> None:
        """`cp_context` reaches the kernel only where the kernel is the layer's one cross-token step: a short
        convolution (its window crosses rank boundaries) or ZeroS's running statistics would need their own
        exchange, so those layers refuse it; so do padding masks, the generation cache and batches (CP takes
        the packed `[1, T_local]` slice)."""
        name = type(self).__name__
        if not self.CONTEXT_PARALLEL:
            raise refuse("cp_context", "a context", f"None: {name} mixes tokens outside its kernel")
        if getattr(self, "use_short_conv", False):
            raise refuse("cp_context", "a context", f"None with use_short_conv=True ({name}'s convolution "
                                                    "window would cross rank boundaries)")
        if attention_mask is not None or use_cache or batch != 1:
            raise refuse("cp_context", "a context", "a packed [1, T_local, hidden] slice without attention_mask "
                                                    f"or use_cache, got batch {batch}")

    # --- parts the families share ---------------------------------------------------------------------

    def add_short_convs(self, use_short_conv: bool, conv_size: int, conv_bias: bool,
                        dims: tuple[int, int, int]) -> None:
        self.use_short_conv, self.conv_size, self.conv_bias = use_short_conv, conv_size, conv_bias
        if use_short_conv:
            for name, dim in zip(("q_conv1d", "k_conv1d", "v_conv1d"), dims):
                setattr(self, name, ShortConvolution(hidden_size=dim, kernel_size=conv_size, bias=conv_bias,
                                                     activation="silu"))

    def project_qkv(self, step: Step, act: Optional[Callable] = None) -> tuple[torch.Tensor, ...]:
        """q, k, v projections (through the short convolutions when the layer has them); the conv windows."""
        x = step.x
        if not self.use_short_conv:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
            return (*(t if act is None else act(t) for t in (q, k, v)), None)
        caches = (None, None, None)
        if step.last is not None and step.last.get("conv_state") is not None:
            caches = step.last["conv_state"]
        outs, windows = [], []
        for proj, conv, cache in zip((self.q_proj, self.k_proj, self.v_proj),
                                     (self.q_conv1d, self.k_conv1d, self.v_conv1d), caches):
            y, window = conv(proj(x), cache=cache, output_final_state=step.use_cache, cu_seqlens=step.cu_seqlens)
            outs.append(y)
            windows.append(window)
        return (*outs, tuple(windows) if step.use_cache else None)

    def attend(self, step: Step, q, k, v, norm: Optional[nn.Module] = None, initial_state: Any = None, **inputs):
        """Run the kernel on [.., H, D] tensors; adds the SLA gate logits and, when the spec fuses the per-head
        RMSNorm, its weight. Returns `(o [.., H, V], final_state or None)`."""
        if self.spec.uses_read_gate:
            inputs["read_logits"] = self.read_gate_proj(step.x).float()
        if self.spec.uses_write_gate:
            inputs["write_logits"] = self.write_gate_proj(step.x).float()
        if self.spec.output_norm == "rms" and norm is not None and norm.weight is not None:
            inputs["norm_weight"] = norm.weight
        if initial_state is None and step.last is not None:
            initial_state = step.last.get("recurrent_state")
        inputs = {name: t.contiguous() for name, t in inputs.items()}
        if step.cp_context is not None:
            inputs["cp_context"] = step.cp_context
        # q, k, v as they come (views of the projections): the op reads them in place or copies them once
        return self.kernel(step.kind, q, k, v, initial_state=initial_state,
                           output_final_state=step.use_cache, cu_seqlens=step.cu_seqlens, **inputs)

    def norm_and_gate(self, o: torch.Tensor, norm: nn.Module, g: Optional[torch.Tensor],
                      gate_fn: Callable, fused: bool) -> torch.Tensor:
        """fla's per-head norm then output gate; when the kernel already applied the norm (spec output_norm =
        "rms", where the SLA read gate sits after it) only the gate is left."""
        if self.spec.output_norm == "rms":
            return o if g is None else (o.float() * gate_fn(g.float())).to(o.dtype)
        if g is None:
            return norm(o)
        if fused:
            return norm(o, g)
        return (norm(o).float() * gate_fn(g.float())).to(o.dtype)

    def require_norm_for_fused(self, norm: Optional[RMSNorm], argument: str, value: Any) -> None:
        if self.spec.output_norm == "rms" and norm is None:
            raise refuse(argument, value, f"a per-head RMSNorm: {type(self).__name__} runs spec {self.spec.name!r}, "
                                          "whose kernel applies one (the SLA read gate comes after it)")
