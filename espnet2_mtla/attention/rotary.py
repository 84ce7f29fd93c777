"""Rotary position embedding (RoPE) on interleaved pairs.

Every attention type of this package uses the same convention: the pair
(x[2i], x[2i+1]) of a head vector at position p is rotated by the angle
p * base^(-2i/d), where d is the rotated width. This is the layout of the
reference ``mtla`` package (and of DeepSeek's MLA code), so checkpoints carry over.
The rotation is computed in float32 and cast back to the input dtype.
"""

import functools

import torch


def _computed_inverse_frequencies(rotary_dim: int, base: float, device, given=None):
    if given is not None:  # (d/2,) from a rope scaling rule
        return torch.tensor(given, dtype=torch.float32, device=device)
    steps = torch.arange(0, rotary_dim, 2, device=device, dtype=torch.float32)
    return base ** (-steps / rotary_dim)


_cached_inverse_frequencies = functools.lru_cache(maxsize=None)(_computed_inverse_frequencies)


def _inverse_frequencies(rotary_dim: int, base: float, device, given=None) -> torch.Tensor:
    """base^(-2i/d) (or the ``given`` tuple), cached per arguments in eager mode; computed
    afresh when traced (a tensor made while tracing must not outlive the trace)."""
    if torch.compiler.is_compiling():
        return _computed_inverse_frequencies(rotary_dim, base, device, given)
    return _cached_inverse_frequencies(rotary_dim, base, device, given)


def rotary_angles(positions: torch.Tensor, rotary_dim: int, base: float = 10000.0,
                  frequencies=None, scale: float = 1.0):
    """Rotations (B, T, rotary_dim/2, 2): cos and sin of each pair's angle at positions (B, T).

    frequencies: None (base^(-2i/d)), or a tuple of the rotary_dim/2 inverse frequencies
    (what a rope scaling rule gives, e.g. Transformers' ``linear`` or ``yarn``);
    scale: multiplies cos and sin (YaRN's attention factor: rotated parts scaled by it).
    """
    angles = positions.to(torch.float32).unsqueeze(-1) * _inverse_frequencies(
        rotary_dim, float(base), positions.device, frequencies
    )
    rotation = torch.stack([angles.cos(), angles.sin()], dim=-1)
    return rotation if scale == 1.0 else rotation * scale


def apply_rotary(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of the last axis of x.

    x: (B, T, d) or (B, T, H, d); rotation: (B, T, d/2, 2) from ``rotary_angles``.
    Eager: one complex product (three kernels with the casts; the real form below is
    nine, which cost a graphed decode step 15-25 us on an H200, measured). Traced
    (torch.compile, torch.export, which refuse complex views): the same products in
    real arithmetic, which the compiler fuses.
    """
    if x.dim() == 4:
        rotation = rotation.unsqueeze(2)  # (B, T, 1, d/2, 2): same rotation for every head
    pairs = x.float().unflatten(-1, (-1, 2))  # (..., d/2, 2)
    if not torch.compiler.is_compiling():
        turned = torch.view_as_complex(pairs) * torch.view_as_complex(rotation)
        return torch.view_as_real(turned).flatten(-2).to(x.dtype)
    even, odd = pairs[..., 0], pairs[..., 1]
    cos, sin = rotation[..., 0], rotation[..., 1]
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return rotated.flatten(-2).to(x.dtype)
