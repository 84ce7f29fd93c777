"""MTLA's stride-aware causal mask through FlexAttention (compiled to Triton): attention
for MTLA training in memory linear in T (``attention/mtla.py`` uses it for rows of
FLEX_MIN_LENGTH tokens or more on CUDA; the mask's definition is there).

Query i sees key column j iff j == i, or j ends a chunk ((p_j + 1) % s == 0), is real and
comes before i (p_j < p_i). Over the T columns that mask is a comb: every tile below the
diagonal is partly visible, so FlexAttention would compute all of causal attention's
tiles and test the mask in each. Here the attention is split in two parts:
- the chunk ends, compacted per row into Nk keys (about T / s): query i sees those before
  it, a staircase of whole tiles (most fully visible: no mask test), about 1 / s of
  causal attention's work; FlexAttention returns their output and log-sum-exp L_i;
- the own column, one score per query: s_i = scale q_i . k_i.
One softmax over both: out_i = (1 - w_i) out_chunks_i + w_i v_i with w_i = sigmoid(s_i -
L_i) (w_i = 1 where no chunk has ended yet, L_i = -inf). Gradients flow through L_i
(FlexAttention differentiates its log-sum-exp), so outputs and gradients are those of the
dense mask.
"""

import torch

FLEX_BLOCK = 128  # FlexAttention's tile
_compiled_flex = None  # torch.compile(flex_attention), built on first use


def compiled_flex_attention():
    """torch.compile(flex_attention): FlexAttention's fused Triton kernels (one compiled
    callable for the process, built on first use)."""
    global _compiled_flex
    from torch.nn.attention.flex_attention import flex_attention

    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention)
    return _compiled_flex


def chunk_end_bound(length: int, down_rate: int, unmerged_tokens: int = 0) -> int:
    """How many chunk ends T = ``length`` columns can hold, padded to a whole tile: at most
    one per column and one per chunk they span (``cache.chunks_spanned``)."""
    from espnet2_mtla.attention.cache import chunks_spanned  # (attention imports this module)

    chunks = min(length, chunks_spanned(length, down_rate, unmerged_tokens))
    return -(-chunks // FLEX_BLOCK) * FLEX_BLOCK


def chunk_end_layout(positions, padding, down_rate, unmerged_tokens=0):
    """Where each row's chunk ends are: (columns (B, Nk), visible_before (B, T + 1)).

    columns[b, c] is the column of row b's c-th chunk end, or T where the row has fewer
    (a slot no query sees); visible_before[b, t] counts row b's chunk ends in columns < t.
    """
    batch, length = positions.shape
    ends = (positions + 1) % down_rate == 0  # (B, T)
    if padding is not None:
        ends = ends & ~padding
    count = ends.long().cumsum(dim=1)  # (B, T) chunk ends up to and including column t
    bound = chunk_end_bound(length, down_rate, unmerged_tokens)
    slot = torch.where(ends, count - 1, bound).clamp(max=bound)  # (B, T); bound: a dump slot
    column = torch.arange(length, device=positions.device).expand(batch, length)
    columns = torch.full((batch, bound + 1), length, dtype=torch.long, device=positions.device)
    columns.scatter_(1, slot, column)
    visible_before = torch.cat([count.new_zeros(batch, 1), count], dim=1)  # (B, T + 1)
    return columns[:, :bound], visible_before


def chunk_end_block_mask(columns, visible_before, length, mask_mod):
    """FlexAttention's BlockMask of queries (T) over the compacted chunk-end keys (Nk).

    Query tile m (queries 128 m .. q_m, q_m its last) sees the keys before
    visible_before[128 m] entirely (full tiles: no mask test) and those up to
    visible_before[q_m] in part.
    """
    from torch.nn.attention.flex_attention import BlockMask

    batch, bound = columns.shape
    key_tiles = bound // FLEX_BLOCK
    first_query = torch.arange(0, length, FLEX_BLOCK, device=columns.device)  # (Mq,)
    last_query = torch.clamp(first_query + FLEX_BLOCK - 1, max=length - 1)
    seen_by_all = visible_before[:, first_query]  # (B, Mq) keys every query of the tile sees
    seen_by_last = visible_before[:, last_query]  # (B, Mq) keys its last query sees
    full = torch.div(seen_by_all, FLEX_BLOCK, rounding_mode="floor")  # (B, Mq) full tiles
    partial_end = torch.div(seen_by_last + FLEX_BLOCK - 1, FLEX_BLOCK, rounding_mode="floor")
    # (the lists are as wide as the key tiles; entries past a tile's count are not read)
    offset = torch.arange(key_tiles, device=columns.device)  # (Mk,)
    partial_indices = (full[..., None] + offset).clamp(max=key_tiles - 1)  # (B, Mq, Mk)
    full_indices = offset.expand(batch, len(first_query), key_tiles)
    return BlockMask.from_kv_blocks(
        (partial_end - full)[:, None].to(torch.int32),  # (B, 1, Mq)
        partial_indices[:, None].to(torch.int32).contiguous(),  # (B, 1, Mq, Mk)
        full[:, None].to(torch.int32),
        full_indices[:, None].to(torch.int32).contiguous(),
        BLOCK_SIZE=FLEX_BLOCK, mask_mod=mask_mod, seq_lengths=(length, bound),
    )


def chunk_end_layout_and_mask(positions, padding, down_rate, unmerged_tokens=0):
    """(columns (B, Nk) of the chunk ends, the BlockMask of the queries over them): what
    depends on positions and padding alone (the layers of a stack call share it)."""
    length = positions.shape[1]
    columns, visible_before = chunk_end_layout(positions, padding, down_rate, unmerged_tokens)

    def mask_mod(b, h, q_idx, kv_idx):  # an empty slot holds column T: never before a query
        return columns[b, kv_idx] < q_idx

    return columns, chunk_end_block_mask(columns, visible_before, length, mask_mod)


def chunk_end_keys(k, v, columns):
    """The chunk-end keys and values (B, H, Nk, d), gathered from the per-column k, v
    (B, H, T, d) at ``columns`` (B, Nk) (module docstring)."""
    index = columns.clamp(max=k.shape[2] - 1)[:, None, :, None]  # (B, 1, Nk, 1)
    keys = k.gather(2, index.expand(-1, k.shape[1], -1, k.shape[3]))
    values = v.gather(2, index.expand(-1, v.shape[1], -1, v.shape[3]))
    return keys, values


def stride_aware_flex_attention(q, k, v, positions, padding, down_rate, scale, compiled=True,
                                unmerged_tokens=0, layout=None):
    """Attention under the stride-aware causal mask: FlexAttention over the chunk ends,
    merged with each query's own column (module docstring).

    q, k (B, H, T, d_qk); v (B, H, T, d_v), one key per column; positions (B, T); padding
    (B, T) or None. Real tokens carry increasing positions (``cache.merge_chunks`` checks
    that they span at most ``cache.chunks_spanned`` chunks), so among real columns p_j < p_i
    iff j < i. ``compiled``: fused Triton kernels (memory linear in T); False runs
    FlexAttention's eager reference (it materialises the scores: for tests on the CPU).
    ``layout``: ``chunk_end_layout_and_mask`` of these positions and padding, where the
    caller has it already (built here otherwise). Returns (B, H, T, d_v).
    """
    from torch.nn.attention.flex_attention import flex_attention

    if layout is None:
        layout = chunk_end_layout_and_mask(positions, padding, down_rate, unmerged_tokens)
    columns, block_mask = layout
    keys, values = chunk_end_keys(k, v, columns)
    attend = compiled_flex_attention() if compiled else flex_attention
    chunks_out, chunks_lse = attend(q, keys, values, block_mask=block_mask, scale=scale,
                                    return_lse=True)  # (B, H, T, d_v), (B, H, T) natural log
    own_score = (q.float() * k.float()).sum(-1) * scale  # (B, H, T)
    own_weight = torch.sigmoid(own_score - chunks_lse.float())  # its share of the softmax
    return torch.lerp(chunks_out, v, own_weight.to(v.dtype)[..., None])
