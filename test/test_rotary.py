"""The rotary position rotation: its eager form (a complex product) and its traced form
(real arithmetic, what torch.compile and torch.export see) give the same rotation."""

import math

import pytest
import torch

from espnet2_mtla.attention.rotary import apply_rotary, rotary_angles


def traced_form(monkeypatch):
    """Run apply_rotary as a compiler traces it (its real-arithmetic branch)."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)


def test_a_pair_turns_by_its_angle():
    positions = torch.tensor([[0, 1, 3]])
    rotation = rotary_angles(positions, 2, base=10000.0)  # one pair: angle = position
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]]])
    out = apply_rotary(x, rotation)
    expected = torch.tensor([[[1.0, 0.0], [math.cos(1), math.sin(1)],
                              [-2 * math.sin(3), 2 * math.cos(3)]]])
    assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("heads", [None, 3])
@pytest.mark.parametrize("scale", [1.0, 1.2])
def test_eager_and_traced_forms_agree(dtype, heads, scale, monkeypatch):
    torch.manual_seed(0)
    batch, length, width = 2, 5, 16
    positions = torch.randint(0, 4000, (batch, length))
    rotation = rotary_angles(positions, width, 500.0, scale=scale)
    shape = (batch, length, width + 8) if heads is None else (batch, length, heads, width + 8)
    x = torch.randn(shape).to(dtype)[..., 8:]  # a slice, as the rope part of a head
    eager = apply_rotary(x, rotation)
    traced_form(monkeypatch)
    traced = apply_rotary(x, rotation)
    assert eager.dtype == traced.dtype == dtype and eager.shape == x.shape
    tolerance = 1e-6 if dtype == torch.float32 else 1e-2
    assert torch.allclose(eager.float(), traced.float(), atol=tolerance)
    # a rotation keeps each pair's length
    norms = x.float().unflatten(-1, (-1, 2)).norm(dim=-1)
    assert torch.allclose(eager.float().unflatten(-1, (-1, 2)).norm(dim=-1), norms * scale,
                          rtol=1e-2 if dtype == torch.bfloat16 else 1e-5)
