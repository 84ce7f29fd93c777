"""Rotary position embedding (RoPE) on interleaved pairs.

Every attention type of this package uses the same convention: the pair
(x[2i], x[2i+1]) of a head vector at position p is rotated by the angle
p * base^(-2i/d), where d is the rotated width. This is the layout of the
reference ``mtla`` package (and of DeepSeek's MLA code), so checkpoints carry over.
The rotation is computed in float32 (as complex numbers) and cast back to the input dtype.
"""

import functools

import torch


@functools.lru_cache(maxsize=None)
def _inverse_frequencies(rotary_dim: int, base: float, device: torch.device) -> torch.Tensor:
    steps = torch.arange(0, rotary_dim, 2, device=device, dtype=torch.float32)
    return base ** (-steps / rotary_dim)


def rotary_angles(positions: torch.Tensor, rotary_dim: int, base: float = 10000.0):
    """Unit complex rotations (B, T, rotary_dim/2) for positions (B, T)."""
    angles = positions.to(torch.float32).unsqueeze(-1) * _inverse_frequencies(
        rotary_dim, float(base), positions.device
    )
    return torch.polar(torch.ones_like(angles), angles)


def apply_rotary(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of the last axis of x.

    x: (B, T, d) or (B, T, H, d); rotation: (B, T, d/2) from ``rotary_angles``.
    """
    if x.dim() == 4:
        rotation = rotation.unsqueeze(2)  # (B, T, 1, d/2): same rotation for every head
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # (..., d/2)
    return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)
