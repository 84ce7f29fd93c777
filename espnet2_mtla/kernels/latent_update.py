"""Triton kernel: merge one decoding step into the latent cache, one program per row.

For the row's position p (chunk k = p // s, entry e = k - first_chunk): if e is a new
entry, write w c there, else add w c to it; overwrite its rope key; then
num_entries = max(num_entries, e + 1) and next_position = p + 1. The same as
``LatentCache.add_step``'s PyTorch path, in one launch instead of a dozen.
"""

import triton
import triton.language as tl


@triton.jit
def _add_step(
    ENTRIES, LATENT, ROPE, POSITIONS, NUM_ENTRIES, FIRST_CHUNK, NEXT_POSITION,
    stride_eb, stride_en, stride_lb, stride_rb, down_rate,
    RANK: tl.constexpr, ROPE_DIM: tl.constexpr,
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
    old = tl.load(slot + dims, mask=(dims < RANK) & (entry < held), other=0.0).to(tl.float32)
    tl.store(slot + dims, (old + latent).to(ENTRIES.dtype.element_ty))
    ropes = tl.arange(0, ROPE_DIM)
    tl.store(slot + RANK + ropes, tl.load(ROPE + row * stride_rb + ropes))
    tl.store(NUM_ENTRIES + row, tl.maximum(held, entry + 1))
    tl.store(FIRST_CHUNK + row, first)
    tl.store(NEXT_POSITION + row, position + 1)


def supports(rank: int, rope_dim: int) -> bool:
    return all(n >= 16 and n & (n - 1) == 0 for n in (rank, rope_dim))


def latent_add_step(cache, latent, rope, positions):
    """In-place update of a LatentCache with one token per row (no padding)."""
    latent, rope = latent.contiguous(), rope.contiguous()
    positions = positions.contiguous()
    entries = cache.entries
    _add_step[(latent.shape[0],)](
        entries, latent, rope, positions, cache.num_entries, cache.first_chunk,
        cache.next_position,
        entries.stride(0), entries.stride(1), latent.stride(0), rope.stride(0),
        cache.down_rate,
        RANK=latent.shape[-1], ROPE_DIM=rope.shape[-1], num_warps=2,
    )
