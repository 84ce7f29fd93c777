"""Rotary position embedding (RoPE) on interleaved pairs.

Every attention type of this package uses the same convention: the pair
(x[2i], x[2i+1]) of a head vector at position p is rotated by the angle
p * base^(-2i/d), where d is the rotated width. This is the layout of the
reference ``mtla`` package (and of DeepSeek's MLA code), so checkpoints carry over.
The rotation is computed in float32 and cast back to the input dtype.
"""

import torch


def rotary_angles(positions: torch.Tensor, rotary_dim: int, base: float = 10000.0):
    """Angles (B, T, rotary_dim/2) in float32 for positions (B, T)."""
    inv_freq = base ** (
        -torch.arange(0, rotary_dim, 2, device=positions.device, dtype=torch.float32)
        / rotary_dim
    )
    return positions.to(torch.float32).unsqueeze(-1) * inv_freq


def apply_rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of the last axis of x.

    x: (B, T, d) or (B, T, H, d); angles: (B, T, d/2) from ``rotary_angles``.
    """
    if x.dim() == 4:
        angles = angles.unsqueeze(2)  # (B, T, 1, d/2): same angle for every head
    cos, sin = angles.cos(), angles.sin()
    pairs = x.float().unflatten(-1, (-1, 2))  # (..., d/2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)
