"""Swap fla's layers for slagen's in an existing model, then generate text with the generation cache.

A tiny byte-level language model, randomly initialised, whose blocks hold `fla.layers.GatedDeltaNet` (when
fla is installed; otherwise slagen's class stands in). Each block's layer is replaced by
`slagen.layers.GatedDeltaNet` with the same constructor arguments, and the weights are carried over with a
strict `load_state_dict`. Runs on the CPU:

    TRITON_INTERPRET=1 python examples/swap_fla_layers.py    # slagen's kernels under Triton's interpreter
    python examples/swap_fla_layers.py                       # without it: the PyTorch reference (logged)
"""

import torch
from torch import nn

import slagen.layers

try:
    from fla.layers import GatedDeltaNet as ModelAttention
except ImportError:
    ModelAttention = slagen.layers.GatedDeltaNet

HIDDEN, LAYERS, VOCAB = 64, 2, 256
ATTENTION = dict(hidden_size=HIDDEN, num_heads=2, head_dim=32, expand_v=1.0)


class Block(nn.Module):
    def __init__(self, layer_idx: int) -> None:
        super().__init__()
        self.attn_norm, self.mlp_norm = nn.RMSNorm(HIDDEN), nn.RMSNorm(HIDDEN)
        self.attn = ModelAttention(layer_idx=layer_idx, **ATTENTION)
        self.mlp = nn.Sequential(nn.Linear(HIDDEN, 4 * HIDDEN), nn.GELU(), nn.Linear(4 * HIDDEN, HIDDEN))

    def forward(self, x, past_key_values=None, use_cache=False):
        y, _, past_key_values = self.attn(self.attn_norm(x), past_key_values=past_key_values, use_cache=use_cache)
        x = x + y
        return x + self.mlp(self.mlp_norm(x)), past_key_values


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.blocks = nn.ModuleList(Block(i) for i in range(LAYERS))
        self.head = nn.Linear(HIDDEN, VOCAB, bias=False)

    def forward(self, ids, past_key_values=None, use_cache=False):
        x = self.embed(ids)
        for block in self.blocks:
            x, past_key_values = block(x, past_key_values, use_cache)
        return self.head(x), past_key_values


@torch.no_grad()
def generate(model: TinyLM, prompt: str, new_tokens: int = 24) -> str:
    ids = torch.tensor([list(prompt.encode())])
    cache = slagen.layers.Cache()  # or fla.models.utils.Cache(): the layers use fla's cache API
    logits, cache = model(ids, past_key_values=cache, use_cache=True)  # prefill
    out = []
    for _ in range(new_tokens):  # one token at a time: the recurrent kernel and the cached states
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out.append(int(nxt))
        logits, cache = model(nxt, past_key_values=cache, use_cache=True)
    return bytes(out).decode(errors="replace")


if __name__ == "__main__":
    torch.manual_seed(0)
    model = TinyLM().eval()
    for block in model.blocks:  # the swap: same arguments, same parameter names, strict load
        layer = slagen.layers.GatedDeltaNet(layer_idx=block.attn.layer_idx, **ATTENTION)
        layer.load_state_dict(block.attn.state_dict(), strict=True)
        block.attn = layer
    print(repr(generate(model, "slagen ")))
