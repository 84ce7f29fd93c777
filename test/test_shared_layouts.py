"""The layers of one stack call share what depends on positions and padding alone
(``layouts``): outputs and gradients equal those of layers that each build their own,
with padding, an unmerged prefix and every attention type; on CUDA the FlexAttention
path's block mask is shared too."""

import pytest
import torch

from conftest import TYPE_CONFS
from espnet2_mtla.model.decoder import DecoderOnlyStack, unmerged_prefix_positions

CASES = ["mha", "gqa", "mla", "mtla_s2", "mtla_s3_offset"]


def stack_of(name, device="cpu", **sizes):
    attention, conf = TYPE_CONFS[name]
    conf = {**conf, **sizes}
    torch.manual_seed(0)
    stack = DecoderOnlyStack(50, 32, 4, 3, 64, 0.0, attention, conf).to(device).train()
    with torch.no_grad():  # merge weights that differ per token (fc_p starts at zero)
        for param_name, param in stack.named_parameters():
            if param_name.endswith("hypernet_down.fc_p.weight"):
                param.copy_(torch.randn_like(param) * param.shape[1] ** -0.5)
            elif param_name.endswith("kv_offset_gain"):
                param.add_(0.5 * torch.randn_like(param))
    return stack


def run_layers(stack, x, positions, padding, unmerged, layouts):
    """Output and input gradient of the stack's layers, sharing ``layouts`` or not."""
    x = x.clone().requires_grad_(True)
    out = stack._run_layers(x, positions, padding, None, unmerged, layouts=layouts)
    (out * torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out)).sum().backward()
    grads = [p.grad.clone() for p in stack.parameters() if p.grad is not None]
    stack.zero_grad(set_to_none=True)
    return out.detach(), x.grad, grads


def inputs(device, length=40):
    """x (3, T, 32), positions 0 .. T - 1, and padding: row 1 on the left, row 2 on the right."""
    torch.manual_seed(1)
    x = torch.randn(3, length, 32, device=device)
    positions = torch.arange(length, device=device)[None].expand(3, length)
    padding = torch.zeros(3, length, dtype=torch.bool, device=device)
    padding[1, :5] = True  # left padding
    padding[2, length - 7:] = True  # right padding
    return x, positions, padding


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("padded", [False, True])
def test_shared_layouts_change_nothing_and_are_shared(name, padded):
    stack = stack_of(name)
    x, positions, padding = inputs("cpu")
    padding = padding if padded else None
    layouts = {}
    shared = run_layers(stack, x, positions, padding, 0, layouts)
    alone = run_layers(stack, x, positions, padding, 0, None)
    assert torch.equal(shared[0], alone[0]) and torch.equal(shared[1], alone[1])
    assert all(torch.equal(a, b) for a, b in zip(shared[2], alone[2]))
    assert any(key[0] == "rotary" for key in layouts)  # built once, by the first layer
    if padded and name in ("mha", "gqa"):
        assert any(key[0] == "padded_causal_mask" for key in layouts)
    if name.startswith("mtla_s"):
        assert {key[0] for key in layouts} >= {"chunk_embedding", "chunk_slots", "stride_mask"}


def test_an_unmerged_prefix_shares_its_layout_too():
    stack = stack_of("mtla_s2")
    x, positions, padding = inputs("cpu")
    positions = unmerged_prefix_positions(positions, padding, 12, 2)
    shared = run_layers(stack, x, positions, padding, 12, {})
    alone = run_layers(stack, x, positions, padding, 12, None)
    assert torch.equal(shared[0], alone[0]) and torch.equal(shared[1], alone[1])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["mtla_s2", "mtla_s3_offset"])
def test_flex_path_shares_its_block_mask_and_changes_nothing(name):
    from espnet2_mtla.attention.mtla import FLEX_MIN_LENGTH

    # (FlexAttention's kernels want head widths of 16 or more)
    stack = stack_of(name, "cuda", kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16,
                     v_head_dim=32)
    x, positions, padding = inputs("cuda", length=max(FLEX_MIN_LENGTH, 256))
    layouts = {}
    shared = run_layers(stack, x, positions, padding, 0, layouts)
    alone = run_layers(stack, x, positions, padding, 0, None)
    assert any(key[0] == "chunk_ends" for key in layouts)
    torch.testing.assert_close(shared[0], alone[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(shared[1], alone[1], rtol=1e-5, atol=1e-6)


def test_a_cached_call_builds_its_own():
    """What a call with a cache builds depends on that cache: layouts are left alone."""
    from conftest import make_attention

    for name in ("mha", "mtla_s2"):
        module = make_attention(name)
        cache = module.make_cache(2)
        layouts = {}
        x = torch.randn(2, 5, 32)
        with torch.no_grad():
            module(x, x, cache=cache, layouts=layouts)
            module(x[:, :1], x[:, :1], cache=cache, layouts=layouts)
        assert layouts == {}
