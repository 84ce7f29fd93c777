"""MTLA's stride-aware causal mask as a FlexAttention ``mask_mod`` (compiled to Triton):
attention for MTLA training in memory linear in T (``attention/mtla.py`` uses it for
rows of FLEX_MIN_LENGTH tokens or more on CUDA; the mask's definition is there)."""

import torch

FLEX_BLOCK = 128  # FlexAttention's tile: the block mask has (T / 128)^2 entries
_compiled_flex = None  # torch.compile(flex_attention), built on first use


def stride_aware_flex_attention(q, k, v, positions, padding, down_rate, scale, compiled=True):
    """Attention under the stride-aware causal mask through FlexAttention.

    q, k (B, H, T, d_qk); v (B, H, T, d_v); positions (B, T); padding (B, T) or None,
    on the left or the right of each row, whose real tokens carry consecutive positions
    (as ``cache.merge_chunks`` checks). Query i sees key j iff j == i, or p_j < p_i and
    (p_j + 1) % s == 0 and j is real. With consecutive positions p_j = j + offset_b, so
    the mask needs only two numbers per row, not a lookup per key: real query i sees
    j == i, or j < i, (j + offset_b + 1) % s == 0 and j >= first_real_b (right padding
    lies after every real query). Every visible key has j <= i, so the block mask lists,
    for query tile m, key tiles 0..m; the mask_mod decides inside them.
    ``compiled``: fused Triton kernels (memory linear in T); False runs FlexAttention's
    eager reference (it materialises the scores: for tests on the CPU).
    """
    global _compiled_flex
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    batch, length = positions.shape
    if padding is None:
        first_real = torch.zeros(batch, dtype=torch.long, device=positions.device)
    else:
        first_real = (~padding).long().argmax(dim=1)  # (B,) index of the first real token
    offset = positions.gather(1, first_real[:, None])[:, 0] - first_real  # (B,) p_j - j

    def mask_mod(b, h, q_idx, kv_idx):
        finished_chunk = (kv_idx + offset[b] + 1) % down_rate == 0
        earlier = (kv_idx < q_idx) & finished_chunk & (kv_idx >= first_real[b])
        return (q_idx == kv_idx) | earlier

    tiles = (length + FLEX_BLOCK - 1) // FLEX_BLOCK
    tile = torch.arange(tiles, device=q.device, dtype=torch.int32)
    kv_num_blocks = (tile + 1).expand(batch, 1, tiles).contiguous()  # (B, 1, tiles)
    kv_indices = tile.expand(batch, 1, tiles, tiles).contiguous()  # (B, 1, tiles, tiles)
    block_mask = BlockMask.from_kv_blocks(kv_num_blocks, kv_indices, BLOCK_SIZE=FLEX_BLOCK,
                                          mask_mod=mask_mod, seq_lengths=(length, length))
    attend = flex_attention
    if compiled:
        if _compiled_flex is None:
            _compiled_flex = torch.compile(flex_attention)
        attend = _compiled_flex
    return attend(q, k, v, block_mask=block_mask, scale=scale)
