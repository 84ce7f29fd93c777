"""Triton kernels: merge one decoding step into the latent cache, one program per row.

For the row's position p (chunk k = p // s, entry e = k - first_chunk): if e is a new
entry, write w c there, else add w c to it; overwrite its rope key; then
num_entries = max(num_entries, e + 1) and next_position = p + 1. The same as
``LatentCache.add_step``'s PyTorch path, in one launch instead of a dozen.

With MTLA's merge hyper-network given (``merge``), the merge weight of the unweighted
latent c, w = sigmoid((W_c PE(k) + b_c) . (W_p c + b_p)), is computed on the GPU too:
``_merge_scores`` sums the products over blocks of the hyper-network's rows, one program
per (row, block), and the update kernel adds the blocks' partial scores. In PyTorch the
sinusoidal embedding of the chunk index, both projections and the sigmoid are ~15 small
launches per layer and step; measured on an H200 inside a CUDA graph (bf16, r 512,
batch 16-32; ``bench/merge_update_speed.py``): 28.5-29.4 us per update in PyTorch, 12.5-
12.9 us with the weight in the update kernel itself (one program per row: its serial
block loop is latency-bound), 5.7-6.2 us in these two kernels (MLA's update: 1.7 us).
The embedding's angles use the PyTorch path's float32 inverse frequencies and are
reduced to [-pi, pi] in float64 before sin / cos, so chunk indices in the tens of
thousands keep float32 accuracy; the products are summed in float32.
"""

import math

import torch
import triton
import triton.language as tl


@triton.jit
def _merge_scores(LATENT, POSITIONS, INV_FREQ, TWO_PI, WC, BC, WP, BP, SCORES,
                  stride_lb, down_rate, RANK: tl.constexpr, BLOCK_LOW: tl.constexpr,
                  NUM_BLOCKS: tl.constexpr):
    """SCORES (B, NUM_BLOCKS): each program one row's partial score
    (W_c PE(chunk) + b_c) . (W_p c + b_p) over the hyper-network's rows
    block * BLOCK_LOW .. + BLOCK_LOW."""
    row = tl.program_id(0)
    block = tl.program_id(1)
    chunk = tl.load(POSITIONS + row) // down_rate
    dims = tl.arange(0, RANK)
    latent = tl.load(LATENT + row * stride_lb + dims).to(tl.float32)
    angle = chunk.to(tl.float32) * tl.load(INV_FREQ + dims // 2)  # as the PyTorch path
    two_pi = tl.load(TWO_PI)  # (float64: a float literal would be float32)
    wide = angle.to(tl.float64)
    turns = (wide / two_pi + 0.5).to(tl.int64).to(tl.float64)  # (angle >= 0: floor)
    reduced = (wide - turns * two_pi).to(tl.float32)  # in [-pi, pi]
    embedding = tl.where(dims % 2 == 0, tl.sin(reduced), tl.cos(reduced))
    embedding = embedding.to(LATENT.dtype.element_ty).to(tl.float32)  # rounded as in PyTorch
    rows = block * BLOCK_LOW + tl.arange(0, BLOCK_LOW)
    w_c = tl.load(WC + rows[:, None] * RANK + dims[None, :]).to(tl.float32)
    w_p = tl.load(WP + rows[:, None] * RANK + dims[None, :]).to(tl.float32)
    from_chunk = tl.sum(w_c * embedding[None, :], 1) + tl.load(BC + rows).to(tl.float32)
    from_latent = tl.sum(w_p * latent[None, :], 1) + tl.load(BP + rows).to(tl.float32)
    tl.store(SCORES + row * NUM_BLOCKS + block, tl.sum(from_chunk * from_latent, 0))


@triton.jit
def _add_step(
    ENTRIES, LATENT, ROPE, POSITIONS, NUM_ENTRIES, FIRST_CHUNK, NEXT_POSITION, SCORES,
    stride_eb, stride_en, stride_lb, stride_rb, down_rate,
    RANK: tl.constexpr, ROPE_DIM: tl.constexpr, MERGE: tl.constexpr,
    NUM_BLOCKS: tl.constexpr,
):
    row = tl.program_id(0)
    position = tl.load(POSITIONS + row)
    chunk = position // down_rate
    first = tl.load(FIRST_CHUNK + row)
    first = tl.where(first < 0, chunk, first)
    entry = chunk - first
    held = tl.load(NUM_ENTRIES + row)
    slot = ENTRIES + row * stride_eb + entry * stride_en
    dims = tl.arange(0, RANK)
    latent = tl.load(LATENT + row * stride_lb + dims).to(tl.float32)
    if MERGE:  # w c from _merge_scores' partial scores; the weight rounded to the
        # latent's dtype, as the PyTorch path's
        score = tl.sum(tl.load(SCORES + row * NUM_BLOCKS + tl.arange(0, NUM_BLOCKS)), 0)
        weight = tl.sigmoid(score)
        latent = (latent * weight.to(LATENT.dtype.element_ty).to(tl.float32)
                  ).to(LATENT.dtype.element_ty).to(tl.float32)
    old = tl.load(slot + dims, mask=(dims < RANK) & (entry < held), other=0.0).to(tl.float32)
    tl.store(slot + dims, (old + latent).to(ENTRIES.dtype.element_ty))
    ropes = tl.arange(0, ROPE_DIM)
    tl.store(slot + RANK + ropes, tl.load(ROPE + row * stride_rb + ropes))
    tl.store(NUM_ENTRIES + row, tl.maximum(held, entry + 1))
    tl.store(FIRST_CHUNK + row, first)
    tl.store(NEXT_POSITION + row, position + 1)


def supports(rank: int, rope_dim: int) -> bool:
    return all(n >= 16 and n & (n - 1) == 0 for n in (rank, rope_dim))


def supports_merge(merge) -> bool:
    """Whether the kernel can compute ``merge``'s (a MergeHyperNetwork) weights: both
    projections with biases, to a power-of-two width, contiguous."""
    layers = (merge.fc_c, merge.fc_p)
    low = merge.fc_c.out_features
    return (low & (low - 1) == 0 and all(layer.bias is not None and layer.weight.is_contiguous()
                                         for layer in layers))


_constants = {}  # (rank, device) -> (inverse frequencies (rank / 2,) float32, 2 pi float64)


def _embedding_constants(rank: int, device):
    """The sinusoidal embedding's inverse frequencies, the PyTorch path's own numbers
    (made once per rank and device, before any graph capture: the eager step first)."""
    from espnet2_mtla.attention.mtla import sinusoid_inverse_frequencies

    key = (rank, str(device))
    if key not in _constants:
        _constants[key] = (sinusoid_inverse_frequencies(rank, device),
                           torch.tensor([2 * math.pi], dtype=torch.float64, device=device))
    return _constants[key]


def latent_add_step(cache, latent, rope, positions, merge=None):
    """In-place update of a LatentCache with one token per row (no padding). merge: the
    MergeHyperNetwork whose weight multiplies ``latent`` first (None: ``latent`` is
    merged as given)."""
    latent, rope = latent.contiguous(), rope.contiguous()
    positions = positions.contiguous()
    entries = cache.entries
    batch, rank = latent.shape
    scores, num_blocks = entries, 1  # (an unused pointer without merge)
    if merge is not None:
        inv_freq, two_pi = _embedding_constants(rank, latent.device)
        low = merge.fc_c.out_features
        block_low = min(low, 16)
        num_blocks = low // block_low
        scores = torch.empty(batch, num_blocks, device=latent.device, dtype=torch.float32)
        _merge_scores[(batch, num_blocks)](
            latent, positions, inv_freq, two_pi, merge.fc_c.weight, merge.fc_c.bias,
            merge.fc_p.weight, merge.fc_p.bias, scores,
            latent.stride(0), cache.down_rate, RANK=rank, BLOCK_LOW=block_low,
            NUM_BLOCKS=num_blocks, num_warps=4)
    _add_step[(batch,)](
        entries, latent, rope, positions, cache.num_entries, cache.first_chunk,
        cache.next_position, scores,
        entries.stride(0), entries.stride(1), latent.stride(0), rope.stride(0),
        cache.down_rate,
        RANK=rank, ROPE_DIM=rope.shape[-1], MERGE=merge is not None,
        NUM_BLOCKS=num_blocks, num_warps=2,
    )
