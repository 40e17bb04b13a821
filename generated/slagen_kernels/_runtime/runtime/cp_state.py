"""What one rank's slice does to the state it receives, per family (context parallelism, `cp.py`).

A slice that lies inside one sequence maps the state entering it to the state leaving it by a map that the
ranks can exchange instead of tokens:
- gated families (none / fixed / scalar / vector decay): `S_out = M ⊙ S_in + b`, `M [H, K]` the decay
  product over the slice per key channel (ones without decay), broadcast over V;
- delta rule: `S_out = M S_in + b`, `M [H, K, K]` the product of the slice's `e^{g}(I - β k kᵀ)` factors;
  the op itself computes it: with `v = 0` and the identity as initial state its final state is `M`;
- ZeroS: `S_out = merge(S_in, b)`, the online-softmax merge of the carried statistics with the slice's
  own (rescale `F̃`, `Ẽ` by the larger running max; add `G`, `Hs`, `P` and the count), after the state
  decay `D [H, K]` (decayed variants) and the measure decay `A [H]` ("consistent") act on the carried part.
In every family `b` is the slice's final state from an empty start. A map is a list of tensors ("maps"
then the state's parts), flattened into one buffer for the collective. `H` here is the number of VALUE heads
(`HV = G·H` with grouped value heads: states, gates and maps are per value head; q and k are only read by
the op's own passes). torch only (runtime leaf).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ..spec import VariantSpec

def state_shapes(spec: VariantSpec, H: int) -> list[tuple[int, ...]]:
    """Shapes of the parts of one sequence's state (no leading N); `H` value heads."""
    K, V = spec.head_dim_k, spec.head_dim_v
    if spec.zero_sum:
        return [(H, 3, K, V), (H, 4)]
    return [(H, K, V)]


def map_shapes(spec: VariantSpec, H: int) -> list[tuple[int, ...]]:
    """Shapes of a slice's map: its decay factors, then its state from an empty start."""
    K = spec.head_dim_k
    if spec.zero_sum:
        decays = [(H, K), (H,)]
    elif spec.decay == "delta":
        decays = [(H, K, K)]
    else:
        decays = [(H, K)]
    return decays + state_shapes(spec, H)


def numel(shapes: Sequence[tuple[int, ...]]) -> int:
    total = 0
    for shape in shapes:
        n = 1
        for d in shape:
            n *= d
        total += n
    return total


def pack(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Parts -> one flat buffer (what a rank sends)."""
    return torch.cat([p.reshape(-1) for p in parts])


def unpack(flat: torch.Tensor, shapes: Sequence[tuple[int, ...]]) -> list[torch.Tensor]:
    out, i = [], 0
    for shape in shapes:
        n = numel([shape])
        out.append(flat[i:i + n].view(shape))
        i += n
    return out


def log_decay_sum(spec: VariantSpec, x: dict, T: int, dtype: torch.dtype) -> torch.Tensor | None:
    """Σ over the slice of the per-step log decay, `[H, K]` (scalar decays broadcast over K) in `dtype`;
    None without decay. `x` holds the slice's inputs (`g` `[1, T, H(, K)]`, `g_gamma` `[H]`, H value heads)."""
    K = spec.head_dim_k
    if spec.decay == "none":
        return None
    if spec.decay == "fixed":
        lg = x["g_gamma"].to(dtype) * T
        return lg[:, None].expand(-1, K)
    total = x["g"][0].to(dtype).sum(0)  # [H] or [H, K]
    return total if spec.decay == "vector" else total[:, None].expand(-1, K)


def decay_maps(spec: VariantSpec, run: Callable[..., Any], x: dict, H: int) -> list[torch.Tensor]:
    """The slice's decay factors (the first entries of its map), differentiable w.r.t. the slice's inputs.
    `run(**x, initial_state=..., output_final_state=True)` is the op; `x` the slice's call-convention
    inputs (q, k, v, gates; no state, no cu_seqlens)."""
    T = x["q"].shape[1]
    dtype = torch.float64 if x["q"].dtype == torch.float64 else torch.float32
    ones = torch.ones(H, spec.head_dim_k, dtype=dtype, device=x["q"].device)
    if spec.decay == "delta":
        return [delta_map(spec, run, x, H, dtype)]
    lg = log_decay_sum(spec, x, T, dtype)
    decay = ones if lg is None else lg.exp()
    if not spec.zero_sum:
        return [decay]
    measure = decay[:, 0] if spec.zero_sum_decay == "consistent" else ones[:, 0]
    return [decay if spec.zero_sum_decay != "none" else ones, measure]


def delta_map(spec: VariantSpec, run: Callable[..., Any], x: dict, H: int, dtype) -> torch.Tensor:
    """`M [H, K, K]`: the op's final state with `v = 0` and the identity (in blocks of V columns) as initial
    state; differentiable w.r.t. k, g, beta and the write gate through the op's own backward."""
    K, V = spec.head_dim_k, spec.head_dim_v
    eye = torch.eye(K, dtype=torch.float32, device=x["q"].device)
    zero_v = torch.zeros_like(x["v"])
    cols = []
    for c0 in range(0, K, V):
        width = min(V, K - c0)
        init = torch.zeros(1, H, K, V, dtype=torch.float32, device=eye.device)
        init[0, :, :, :width] = eye[:, c0:c0 + width]
        _, final = run(**dict(x, v=zero_v), initial_state=init, output_final_state=True)
        cols.append(final[0, :, :, :width])
    return torch.cat(cols, dim=-1).to(dtype)


def step(spec: VariantSpec, slice_map: Sequence[torch.Tensor], state: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The state leaving a slice, from the state entering it (`state`: its parts, no leading N)."""
    if spec.zero_sum:
        return merge_zeros(slice_map, state)
    (M, b), (S,) = slice_map, state
    if spec.decay == "delta":
        return [M @ S + b]
    return [M[..., None] * S + b]


def merge_zeros(slice_map: Sequence[torch.Tensor], state: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """ZeroS: carried statistics `state` (decayed by the slice's `D`, `A`) merged with the slice's own.

    A state is `(F̃, Ẽ, m)` up to the scale freedom `(F̃ e^c, Ẽ e^c, m - c)`; what a consumer reads is
    `F = e^m F̃`, `E = e^m Ẽ`. So the merge is computed with the maxima as constants (as the kernels do), the
    output's max gets no gradient (a consumer's dm carries nothing beyond dF̃, dẼ), and each input's max
    gets the gradient the scale freedom implies, `F̃·dF̃ + Ẽ·dẼ` (what a producer that keeps m in autograd,
    like the reference, needs; the kernels ignore it)."""
    D, A, kv2, st2 = slice_map
    kv1, st1 = state
    kv1, st1 = _lift(kv1, st1)
    kv2, st2 = _lift(kv2, st2)
    m1, n1, m2, n2 = st1[:, 2].detach(), st1[:, 3].detach(), st2[:, 2].detach(), st2[:, 3].detach()
    m1 = torch.where(n1 > 0, m1, float("-inf"))  # an empty state's max is read as -inf
    m2 = torch.where(n2 > 0, m2, float("-inf"))
    m = torch.maximum(m1, m2)
    finite = torch.isfinite(m)
    m_safe = torch.where(finite, m, 0.0)
    c1 = torch.where(n1 > 0, (m1 - m_safe).exp(), 0.0)
    c2 = torch.where(n2 > 0, (m2 - m_safe).exp(), 0.0)
    Dk = D[:, :, None]  # [H, K, 1]: the state decay acts on key rows
    F = Dk * kv1[:, 0] * c1[:, None, None] + kv2[:, 0] * c2[:, None, None]
    G = Dk * kv1[:, 1] + kv2[:, 1]
    Hs = Dk * kv1[:, 2] + kv2[:, 2]
    E = A * st1[:, 0] * c1 + st2[:, 0] * c2
    P = A * st1[:, 1] + st2[:, 1]
    n = A * st1[:, 3] + st2[:, 3]
    return [torch.stack((F, G, Hs), dim=1), torch.stack((E, P, m_safe, n), dim=-1)]


def _lift(kv: torch.Tensor, stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Same values; the max `m` now reaches F̃ and Ẽ as the factor `e^{m - m}` (gradient `F̃·dF̃ + Ẽ·dẼ`)."""
    m = stats[:, 2]
    if not m.requires_grad:
        return kv, stats
    n = stats[:, 3].detach()
    gauge = torch.where(n > 0, m - m.detach(), 0.0).exp()
    kv = torch.cat((kv[:, :1] * gauge[:, None, None, None], kv[:, 1:]), dim=1)
    stats = torch.cat((stats[:, :1] * gauge[:, None], stats[:, 1:]), dim=1)
    return kv, stats


def exchanged_bytes(spec: VariantSpec, H: int, world_size: int, itemsize: int = 4) -> dict[str, int]:
    """Bytes one rank sends and receives per call: forward, its map to every other rank (all-gather);
    backward, its incoming-state gradient likewise. States are fp32 (itemsize 4)."""
    forward = numel(map_shapes(spec, H)) * itemsize
    backward = numel(state_shapes(spec, H)) * itemsize
    return dict(send_forward=forward, send_backward=backward, receive_forward=forward * (world_size - 1),
                receive_backward=backward * (world_size - 1))
