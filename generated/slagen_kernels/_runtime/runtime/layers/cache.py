"""The generation cache: per layer, the recurrent state and the short-convolution windows, kept in the object
fla's models pass around as `past_key_values` (fla 0.6's `fla.models.cache_utils.Cache`, built on Hugging
Face's `Cache`). The layers use only the part of its API that fla's own layers use (`len`, `[layer_idx]`,
`update(..., layer_idx=, offset=)`, `get_seq_length(layer_idx)`), so either fla's object or the small `Cache`
below (for users without fla and transformers) works."""

from __future__ import annotations

from typing import Any, Optional

import torch


class Cache:
    """A list of per-layer state dicts with fla's keys (`recurrent_state`, `attn_state`, `conv_state`,
    `ffn_state`) and a token count per layer."""

    def __init__(self, seen_tokens: int = 0) -> None:
        self.states: list[dict[str, Any]] = []
        self._seen: list[int] = []
        self._start = int(seen_tokens)

    def __len__(self) -> int:
        return len(self.states)

    def __getitem__(self, layer_idx: int) -> dict[str, Any]:
        if layer_idx >= len(self.states):
            raise KeyError(f"layer_idx: the cache holds {len(self.states)} layers, got {layer_idx}")
        return self.states[layer_idx]

    def __iter__(self):
        return iter(self.states)

    def update(self, recurrent_state: Any = None, attn_state: Any = None, conv_state: Any = None,
               ffn_state: Any = None, layer_idx: int = 0, offset: Optional[int] = 1, **_: Any) -> dict[str, Any]:
        while len(self.states) <= layer_idx:
            self.states.append({"recurrent_state": None, "attn_state": None, "conv_state": None, "ffn_state": None})
            self._seen.append(self._start)
        state = self.states[layer_idx]
        for key, value in (("recurrent_state", recurrent_state), ("attn_state", attn_state),
                           ("conv_state", conv_state), ("ffn_state", ffn_state)):
            if value is not None:
                state[key] = value
        self._seen[layer_idx] += 1 if offset is None else int(offset)
        return state

    def get_seq_length(self, layer_idx: Optional[int] = 0) -> int:
        layer_idx = layer_idx or 0
        return self._seen[layer_idx] if layer_idx < len(self._seen) else 0

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Select batch rows (beam search), on every tensor of every state."""
        def pick(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return value.index_select(0, beam_idx.to(value.device))
            if isinstance(value, (tuple, list)):
                return type(value)(pick(v) for v in value)
            return value

        self.states = [{key: pick(value) for key, value in state.items()} for state in self.states]


def layer_state(module: Any, past_key_values: Any) -> Optional[dict[str, Any]]:
    """The module's entry of the cache, or None before its first update (fla's `get_layer_cache`)."""
    if past_key_values is None:
        return None
    layer_idx = _layer_idx(module)
    return past_key_values[layer_idx] if len(past_key_values) > layer_idx else None


def save_layer_state(module: Any, past_key_values: Any, offset: int, **states: Any) -> None:
    if past_key_values is not None:
        past_key_values.update(layer_idx=_layer_idx(module), offset=offset, **states)


def _layer_idx(module: Any) -> int:
    if getattr(module, "layer_idx", None) is None:
        raise ValueError(f"layer_idx: {type(module).__name__} needs a layer_idx to use past_key_values, got None")
    return module.layer_idx
