"""MTLA's O(T)-memory training path: FlexAttention with the stride-aware mask.

FlexAttention's eager reference against scaled_dot_product_attention with the dense
stride-aware mask, outputs and gradients (on the GPU where there is one: torch >= 2.9 has
no Flex backward on the CPU, where the outputs alone are compared), also with an unmerged
prefix; the block lists over the compacted chunk ends against the mask itself. GPU: the
module's automatic compiled path against the PyTorch path (kernels off), and peak memory
that grows linearly in T. MLA's causal block mask against causal attention; GPU: MLA's
training through it and through the flash kernel against the CPU.
"""

import pytest
import torch

from espnet2_mtla.attention import build_attention, mtla
from espnet2_mtla.attention.base import scaled_dot_product_attention
from espnet2_mtla.kernels.stride_aware_flex import (
    FLEX_BLOCK,
    chunk_end_keys,
    chunk_end_layout_and_mask,
    stride_aware_flex_attention,
)
from espnet2_mtla.kernels import kernels_set
from espnet2_mtla.kernels.causal_flex import causal_block_mask
from espnet2_mtla.model.decoder import unmerged_prefix_positions
from espnet2_mtla.model.prefix_lm import left_padding

LATENT = dict(kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32)


def padded_positions(lengths, total, left):
    """Positions (B, T) and padding (B, T) of rows padded on the left or the right."""
    steps = torch.arange(total)
    lengths = torch.tensor(lengths)
    if left:
        padding, positions = left_padding(lengths, total)
    else:
        padding = steps[None, :] >= lengths[:, None]
        positions = steps.expand(len(lengths), total).clone()
    return positions, padding


def flex_backward_runs_on(device):
    """Whether this torch's FlexAttention has a backward on ``device`` (torch >= 2.9
    refuses one on the CPU; the module itself takes Flex on CUDA only)."""
    if device.type != "cpu":
        return True
    q = torch.zeros(1, 1, 4, 16, requires_grad=True)
    try:
        stride_aware_flex_attention(q, q, q, torch.arange(4)[None], None, 1, 1.0,
                                    compiled=False)
    except NotImplementedError:
        return False
    return True


@pytest.mark.parametrize("down_rate", [1, 2, 3, 4])
@pytest.mark.parametrize("left", [False, True])
def test_flex_equals_dense_mask_outputs_and_gradients(down_rate, left):
    """Flex's eager reference on the GPU where there is one, else on the CPU; gradients
    wherever this torch computes them (skipped, said so, where it refuses)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with_grad = flex_backward_runs_on(device)
    torch.manual_seed(down_rate)
    batch, heads, total = 3, 2, 150  # two 128-tiles, the second partial
    positions, padding = padded_positions([150, 97, 131], total, left)
    positions = positions + torch.tensor([0, 5, 2])[:, None]  # rows start mid-chunk too
    q, k, v = (torch.randn(batch, heads, total, width, device=device,
                           requires_grad=with_grad) for width in (48, 48, 32))
    positions, padding = positions.to(device), padding.to(device)
    out = stride_aware_flex_attention(q, k, v, positions, padding, down_rate, 0.2,
                                      compiled=False)
    module = build_attention("mtla", 64, 2, down_rate=down_rate, **LATENT).to(device)
    visible = module._stride_aware_mask(positions, total, padding)  # (B, T, T)
    expected = scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None], scale=0.2)
    tolerance = 1e-5 if device.type == "cpu" else 1e-4
    real = ~padding
    for row in range(batch):
        assert torch.allclose(out[row][:, real[row]], expected[row][:, real[row]],
                              atol=tolerance)
    if not with_grad:
        pytest.skip(f"torch {torch.__version__} has no FlexAttention backward on the CPU "
                    "(outputs checked; gradients are checked on a GPU)")
    weights = torch.randn_like(out) * real[:, None, :, None]  # loss over real queries only
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (q, k, v))
    for got, want in zip(grads, expected_grads):
        assert torch.allclose(got, want, atol=tolerance)


def prefix_then_text(prefix_lengths, prefix_columns, text_lengths, text_columns, stride):
    """Positions and padding (B, P + T) of a left-padded prefix kept unmerged (frame p at
    p s + s - 1) and a right-padded text after it, as DecoderOnlyStack builds them."""
    prefix_positions, prefix_padding = padded_positions(prefix_lengths, prefix_columns, True)
    text_padding = torch.arange(text_columns)[None, :] >= torch.tensor(text_lengths)[:, None]
    text_positions = torch.tensor(prefix_lengths)[:, None] + torch.arange(text_columns)
    positions = torch.cat([prefix_positions, text_positions], 1)
    padding = torch.cat([prefix_padding, text_padding], 1)
    return unmerged_prefix_positions(positions, padding, prefix_columns, stride), padding


def layouts():
    """(positions, padding, down_rate, unmerged prefix columns) covering the cases."""
    for down_rate in (1, 2, 3, 4):
        for left in (False, True):
            positions, padding = padded_positions([300, 171, 257], 300, left)
            yield positions + torch.tensor([0, 5, 2])[:, None], padding, down_rate, 0
        yield torch.arange(1024)[None], None, down_rate, 0
        positions, padding = prefix_then_text([90, 37], 90, [140, 61], 140, down_rate)
        yield positions, padding, down_rate, 90


@pytest.mark.parametrize("case", range(16))
def test_block_mask_lists_every_visible_tile_and_whole_tiles_as_full(case):
    """The block lists against the mask itself: every tile holding a visible pair is
    listed, a tile listed as full (computed without the mask) is visible throughout, and
    at s > 1 the chunk part does about 1 / s of causal attention's work."""
    from torch.nn.attention.flex_attention import create_mask

    positions, padding, down_rate, unmerged = list(layouts())[case]
    batch, length = positions.shape
    k = torch.zeros(batch, 1, length, 8)
    columns, block_mask = chunk_end_layout_and_mask(positions, padding, down_rate, unmerged)
    keys, _ = chunk_end_keys(k, k, columns)
    key_len = keys.shape[2]
    assert key_len % FLEX_BLOCK == 0
    visible = create_mask(block_mask.mask_mod, batch, 1, length, key_len, device="cpu")[:, 0]
    query_tiles, key_tiles = -(-length // FLEX_BLOCK), key_len // FLEX_BLOCK
    grid = (batch, query_tiles * FLEX_BLOCK, key_len)
    any_pair = torch.zeros(grid, dtype=torch.bool)
    any_pair[:, :length] = visible
    every_pair = torch.ones(grid, dtype=torch.bool)
    every_pair[:, :length] = visible
    tiles = (batch, query_tiles, FLEX_BLOCK, key_tiles, FLEX_BLOCK)
    any_pair = any_pair.view(tiles).any(4).any(2)  # (B, Mq, Mk)
    every_pair = every_pair.view(tiles).all(4).all(2)
    listed = torch.zeros(batch, query_tiles, key_tiles, dtype=torch.bool)
    full = torch.zeros_like(listed)
    for b in range(batch):
        for m in range(query_tiles):
            listed[b, m, block_mask.kv_indices[b, 0, m, : block_mask.kv_num_blocks[b, 0, m]]] = True
            full[b, m, block_mask.full_kv_indices[b, 0, m,
                                                 : block_mask.full_kv_num_blocks[b, 0, m]]] = True
    assert not (listed & full).any()  # a tile is partial or full, not both
    assert not (any_pair & ~(listed | full)).any()  # nothing visible is skipped
    assert not (full & ~every_pair).any()  # full tiles need no mask
    if down_rate > 1 and padding is None:
        causal_tiles = query_tiles * (query_tiles + 1) // 2
        assert (listed | full).sum() <= causal_tiles / down_rate + query_tiles
        assert full.sum() >= (listed | full).sum() - query_tiles


@pytest.mark.parametrize("down_rate", [2, 3])
def test_flex_with_an_unmerged_prefix_equals_the_dense_mask(down_rate):
    """Prefix frames at stride s (each a chunk of its own), left-padded, then the text:
    positions that are not consecutive, as DecoderOnlyStack(merge_prefix=False) gives."""
    torch.manual_seed(down_rate)
    positions, padding = prefix_then_text([40, 23], 40, [150, 88], 150, down_rate)
    q, k, v = (torch.randn(2, 2, 190, width) for width in (48, 48, 32))
    out = stride_aware_flex_attention(q, k, v, positions, padding, down_rate, 0.2,
                                      compiled=False, unmerged_tokens=40)
    module = build_attention("mtla", 64, 2, down_rate=down_rate, **LATENT)
    visible = module._stride_aware_mask(positions, 190, padding)  # (B, T, T)
    expected = scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None], scale=0.2)
    for row in range(2):
        real = ~padding[row]
        assert torch.allclose(out[row][:, real], expected[row][:, real], atol=1e-5)


def test_flex_mask_is_not_plain_causal():
    """With s = 2 a query must not see an unfinished earlier chunk's column."""
    positions = torch.arange(6)[None]
    q = torch.zeros(1, 1, 6, 16)
    k = torch.zeros(1, 1, 6, 16)
    v = torch.arange(6.0)[None, None, :, None].expand(1, 1, 6, 16).contiguous()
    out = stride_aware_flex_attention(q, k, v, positions, None, 2, 1.0, compiled=False)
    # uniform scores: the output is the mean of the visible columns' values
    # query 0 sees {0}; 1 sees {1}; 2 sees {1, 2}; 3 sees {1, 3}; 4 sees {1, 3, 4}; 5: {1, 3, 5}
    expected = torch.tensor([0.0, 1.0, 1.5, 2.0, 8 / 3, 3.0])
    assert torch.allclose(out[0, 0, :, 0], expected)


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("down_rate", [1, 2, 3])
def test_module_training_on_cuda_flex_equals_torch_path(down_rate, monkeypatch):
    # rows this short take the dense mask by default (FLEX_MIN_LENGTH): Flex forced, and
    # seen to run, so that the comparison is Flex against the dense path
    monkeypatch.setattr(mtla, "FLEX_MIN_LENGTH", 0)
    flex_calls = []
    flex = mtla.stride_aware_flex_attention
    monkeypatch.setattr(mtla, "stride_aware_flex_attention",
                        lambda *args, **kwargs: flex_calls.append(1) or flex(*args, **kwargs))
    torch.manual_seed(0)
    module = build_attention("mtla", 256, 8, down_rate=down_rate, kv_lora_rank=256,
                             qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64)
    module = module.to("cuda").train()
    x = torch.randn(3, 300, 256, device="cuda")
    positions, padding = padded_positions([300, 211, 129], 300, left=False)
    positions, padding = positions.cuda(), padding.cuda()
    results = {}
    for enabled in (True, False):
        with kernels_set(enabled):
            module.zero_grad()
            xin = x.clone().requires_grad_(True)
            out = module(xin, position=positions, key_padding_mask=padding)
            loss = (out * (~padding)[..., None]).square().sum()
            loss.backward()
        grads = [xin.grad] + [p.grad.clone() for p in module.parameters()]
        results[enabled] = (out.masked_fill(padding[..., None], 0).detach(), grads)
        if enabled:
            assert flex_calls, "the kernels-on run did not take FlexAttention"
            flex_calls.clear()
    assert not flex_calls  # the kernels-off run: the dense path
    (out_flex, grads_flex), (out_torch, grads_torch) = results[True], results[False]
    assert torch.allclose(out_flex, out_torch, atol=1e-4, rtol=1e-4)
    for got, want in zip(grads_flex, grads_torch):
        assert ((got - want).norm() / want.norm().clamp(min=1e-12)) < 1e-4


@pytest.mark.gpu
@gpu
def test_training_memory_grows_linearly_in_length():
    torch.manual_seed(0)
    module = build_attention("mtla", 512, 8, down_rate=2, kv_lora_rank=256,
                             qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64)
    module = module.to("cuda", torch.bfloat16).train()
    peaks = {}
    for length in (4096, 16384):  # both long enough for the Flex path (FLEX_MIN_LENGTH)
        x = torch.randn(1, length, 512, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        module(x).sum().backward()  # compile outside the measurement
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        module(x).sum().backward()
        torch.cuda.synchronize()
        peaks[length] = torch.cuda.max_memory_allocated() - base
    # 4x the length: linear memory gives ~4x; a (T, T) mask or score tensor would give 16x
    assert peaks[16384] < 6 * peaks[4096], peaks


@pytest.mark.parametrize("length", [1, 127, 128, 300])
def test_causal_block_mask_is_causal_attention(length):
    """MLA's causal block mask (kernels/causal_flex.py): every tile with a visible pair
    listed, full tiles visible throughout, and FlexAttention's eager reference with it
    equal to causal SDPA with values narrower than the keys."""
    from torch.nn.attention.flex_attention import create_mask, flex_attention

    block_mask = causal_block_mask(length, torch.device("cpu"))
    tiles = -(-length // FLEX_BLOCK)
    dense = create_mask(block_mask.mask_mod, 1, 1, length, length, device="cpu")[0, 0]
    assert torch.equal(dense, torch.ones(length, length, dtype=torch.bool).tril())
    for m in range(tiles):
        full = block_mask.full_kv_indices[0, 0, m, : block_mask.full_kv_num_blocks[0, 0, m]]
        partial = block_mask.kv_indices[0, 0, m, : block_mask.kv_num_blocks[0, 0, m]]
        assert full.tolist() == list(range(m)) and partial.tolist() == [m]
    torch.manual_seed(length)
    q, k, v = (torch.randn(2, 3, length, width) for width in (48, 48, 32))
    out = flex_attention(q, k, v, block_mask=block_mask, scale=0.2)
    expected = scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.2)
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("path", ["flash_padded", "causal_flex"])
def test_mla_causal_training_on_cuda_equals_the_cpu(dtype, path, monkeypatch):
    """MLA without padding trains on CUDA eagerly through SDPA's flash kernel over values
    padded to the query-key width, and inside torch.compile through causal FlexAttention
    with values of their own width: outputs and gradients of the CPU either way."""
    import copy

    from espnet2_mtla.kernels import stride_aware_flex

    monkeypatch.setattr(stride_aware_flex, "_compiled_flex", None)  # set where Flex runs
    torch.manual_seed(0)
    module = build_attention("mla", 256, 8, kv_lora_rank=256, qk_nope_head_dim=64,
                             qk_rope_head_dim=32, v_head_dim=64).train()
    x = torch.randn(2, 300, 256)

    def run(device, dtype):
        copied = copy.deepcopy(module).to(device, dtype)
        xin = x.to(device, dtype).detach().clone().requires_grad_(True)
        compiled = device == "cuda" and path == "causal_flex"
        out = (torch.compile(copied) if compiled else copied)(xin)
        out.float().square().sum().backward()
        grads = [xin.grad] + [p.grad for p in copied.parameters()]
        return out.float().cpu(), [g.float().cpu() for g in grads]

    want_out, want_grads = run("cpu", torch.float32)
    got_out, got_grads = run("cuda", dtype)
    assert (stride_aware_flex._compiled_flex is not None) == (path == "causal_flex")
    tolerance = 1e-4 if dtype == torch.float32 else 3e-2
    assert ((got_out - want_out).norm() / want_out.norm()) < tolerance
    for got, want in zip(got_grads, want_grads):
        assert ((got - want).norm() / want.norm().clamp(min=1e-12)) < tolerance

