"""nn.Module layers over a variant's kernels.

- fla-compatible layers (fla 0.6's class names, constructor arguments, parameter names and shapes, forward
  contract `(hidden_states, attention_mask, past_key_values, use_cache, ...) -> (o, None, past_key_values)`),
  one module per family; a subclass names where its kernels come from (`kernels`: `PackageKernels` in a
  generated package, `slagen.layers.JitKernels` for specs compiled on demand). `FAMILIES` maps a family name
  (what `slagen.codegen.layer_names.fla_layer` returns) to its class.
- `TokenMixer`: the earlier bare token mixer `(x, initial_state, output_final_state, cu_seqlens)`.
"""

from .cache import Cache
from .gdn import GatedDeltaNet
from .gla import GatedLinearAttention
from .kernels import LayerKernels, PackageKernels
from .linear import LinearAttention
from .mixer import TokenMixer
from .retention import MultiScaleRetention
from .simple_gla import SimpleGatedLinearAttention
from .zeros import ZeroSAttention

FAMILIES = {cls.__name__: cls for cls in (LinearAttention, MultiScaleRetention, SimpleGatedLinearAttention,
                                          GatedLinearAttention, GatedDeltaNet, ZeroSAttention)}

__all__ = ["Cache", "FAMILIES", "GatedDeltaNet", "GatedLinearAttention", "LayerKernels", "LinearAttention",
           "MultiScaleRetention", "PackageKernels", "SimpleGatedLinearAttention", "TokenMixer", "ZeroSAttention"]
