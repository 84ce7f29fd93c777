"""Causal attention through FlexAttention (compiled to Triton) for heads whose values are
narrower than their queries and keys: MLA's expanded training path (``attention/mtla.py``,
d_qk = d_n + d_r = 96 against d_v = 64 at the paper's sizes).

PyTorch's flash kernel takes one head width, so eagerly that path pads each value head
with zeros to the query-key width: the value products (forward P V, backward dP = dO V^T
and dV = P^T dO) then run over 96 columns instead of 64, 1.5x MHA's attention work where
the arithmetic is 1.29x (fwd + bwd: 4 products over 96 columns and 3 over 64, against 7
over 64). FlexAttention takes value heads of their own width; inside torch.compile it is
the faster kernel (``attention/mtla.py``, CAUSAL_FLEX_RULE). The block mask is built from
its tiles directly (no T x T mask): query tile m sees key tiles 0 .. m - 1 whole (no mask
test) and tile m in part.
"""

import torch

from espnet2_mtla.kernels.stride_aware_flex import FLEX_BLOCK, compiled_flex_attention


def causal_mask_mod(b, h, q_idx, kv_idx):
    return kv_idx <= q_idx


def causal_block_mask(length: int, device):
    """FlexAttention's BlockMask of causal attention over ``length`` queries and keys,
    batch and heads broadcast (one per row length). Layers share it through ``layouts``
    where their caller passes one (a model compiled whole); ``DecoderOnlyStack``'s own
    compiled layers pass none, so there each layer builds its own inside the graph."""
    from torch.nn.attention.flex_attention import BlockMask

    tiles = -(-length // FLEX_BLOCK)
    tile = torch.arange(tiles, device=device, dtype=torch.int32)  # (M,)
    return BlockMask.from_kv_blocks(
        torch.ones(1, 1, tiles, device=device, dtype=torch.int32),  # one partial: diagonal
        tile.view(1, 1, tiles, 1).expand(1, 1, tiles, tiles).contiguous(),  # (1, 1, M, M)
        tile.view(1, 1, tiles),  # m full tiles before the diagonal
        tile.expand(1, 1, tiles, tiles).contiguous(),  # they are tiles 0 .. m - 1
        BLOCK_SIZE=FLEX_BLOCK, mask_mod=causal_mask_mod, seq_lengths=(length, length),
    )


def causal_flex_attention(q, k, v, scale: float, block_mask):
    """softmax(scale q k^T, causal) v through compiled FlexAttention: q, k (B, H, T, d_qk),
    v (B, H, T, d_v) with d_v of its own; ``block_mask``: ``causal_block_mask(T)`` (the
    layers of a call may share one). Returns (B, H, T, d_v)."""
    return compiled_flex_attention()(q, k, v, block_mask=block_mask, scale=scale)
