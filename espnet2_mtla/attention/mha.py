"""Multi-head attention with shared key/value heads: MHA, MQA and GQA.

H query heads of size d_h = D / H; ``num_kv_heads`` key/value heads (H: MHA, 1: MQA,
G: GQA, each shared by H / G query heads). RoPE on the full q and k, scale d_h^-1/2.
The cache holds k (after RoPE) and v, (B, T, n_kv, d_h) each: 2 * T * n_kv * d_h numbers.
"""

import torch
from torch import nn

from espnet2_mtla.attention.base import (
    SelfAttention,
    attention_mask_to_bias,
    scaled_dot_product_attention,
    shared,
)
from espnet2_mtla.attention.cache import KVCache
from espnet2_mtla.attention.rotary import apply_rotary, rotary_angles
from espnet2_mtla.attention.shared_prefix import SharedPrefixKVCache, shared_prefix_kv_attention


class MultiHeadAttention(SelfAttention):
    """Causal self-attention with RoPE and ``num_kv_heads`` key/value heads."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        num_kv_heads: int = None,
        dropout: float = 0.0,
        bias: bool = False,
        rope_base: float = 10000.0,
    ):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if embed_dim <= 0 or num_heads <= 0 or num_kv_heads <= 0:
            raise ValueError(
                f"embed_dim, num_heads and num_kv_heads must be positive, got "
                f"{embed_dim}, {num_heads}, {num_kv_heads}"
            )
        if embed_dim % num_heads:
            raise ValueError(
                f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}"
            )
        if num_heads % num_kv_heads:
            raise ValueError(
                f"num_heads={num_heads} is not divisible by num_kv_heads={num_kv_heads}"
            )
        self.head_dim = embed_dim // num_heads
        if self.head_dim % 2:
            raise ValueError(
                f"head dimension embed_dim / num_heads = {self.head_dim} must be even for RoPE"
            )
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.dropout = dropout
        self.rope_base = rope_base
        self.q_proj = nn.Linear(embed_dim, num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, num_kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(num_heads * self.head_dim, embed_dim, bias=bias)

    def make_cache(self, batch_size, device=None, dtype=None, capacity=0,
                   unmerged_tokens=0) -> KVCache:
        device, dtype = self._cache_placement(device, dtype)
        return KVCache(batch_size, self.num_kv_heads, self.head_dim, device, dtype, capacity)

    def _attend(self, query, key, positions, key_padding_mask, attn_bias, cache,
                unmerged_tokens=0, layouts=None):  # (every token has its own key: nothing merges)
        batch, query_len, _ = query.shape
        key_len = key.shape[1]
        angles = shared(layouts, ("rotary", self.head_dim, self.rope_base),
                        lambda: rotary_angles(positions, self.head_dim, self.rope_base))
        # (B, Tk, d_h/2, 2)

        q = self.q_proj(query).view(batch, query_len, self.num_heads, self.head_dim)
        k = self.k_proj(key).view(batch, key_len, self.num_kv_heads, self.head_dim)
        v = self.v_proj(key).view(batch, key_len, self.num_kv_heads, self.head_dim)
        q = apply_rotary(q, angles[:, key_len - query_len :])  # (B, Tq, H, d_h)
        k = apply_rotary(k, angles)  # (B, Tk, n_kv, d_h)

        num_cached = 0 if cache is None else cache.num_tokens
        padding = key_padding_mask
        if cache is not None:
            k, v, padding = cache.append(k, v, key_padding_mask, positions)
        if isinstance(cache, SharedPrefixKVCache):  # (beam search: single steps)
            out = shared_prefix_kv_attention(q, k, v, padding, cache, self.head_dim**-0.5)
            return self.out_proj(out)
        total_len = k.shape[1]

        mask, is_causal = None, False
        if cache is not None and cache.static:
            mask = ~padding[:, None, None, :]  # (B, 1, 1, capacity): the slots written so far
        elif padding is None and attn_bias is None and query_len == 1:
            pass  # one query at the end sees every key: no mask
        elif padding is None and attn_bias is None and num_cached == 0 and query_len == key_len:
            is_causal = True
        else:
            def visible():  # (B, 1, Tq, T)
                # query i is key index total_len - query_len + i; it sees every non-padded
                # key up to itself, and always itself (so no row is empty)
                query_index = torch.arange(total_len - query_len, total_len, device=q.device)
                key_index = torch.arange(total_len, device=q.device)
                seen = (key_index[None, :] <= query_index[:, None]).expand(batch, -1, -1)
                if padding is not None:
                    seen = seen & ~padding[:, None, :]
                return (seen | (key_index[None, :] == query_index[:, None]))[:, None]

            mask = shared(layouts, ("padded_causal_mask", query_len), visible)
            if attn_bias is not None:
                mask = attention_mask_to_bias(mask, q.dtype, attn_bias)

        out = scaled_dot_product_attention(
            q.transpose(1, 2),  # (B, H, Tq, d_h)
            k.transpose(1, 2),  # (B, n_kv, T, d_h)
            v.transpose(1, 2),
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
            scale=self.head_dim**-0.5,
            enable_gqa=self.num_kv_heads != self.num_heads,
        )  # (B, H, Tq, d_h)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class MultiQueryAttention(MultiHeadAttention):
    """MQA: one key/value head shared by all query heads."""

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=False, rope_base=10000.0):
        super().__init__(embed_dim, num_heads, 1, dropout, bias, rope_base)


class GroupedQueryAttention(MultiHeadAttention):
    """GQA: ``num_kv_heads`` key/value heads, each shared by num_heads / num_kv_heads queries."""

    def __init__(
        self, embed_dim, num_heads, num_kv_heads, dropout=0.0, bias=False, rope_base=10000.0
    ):
        super().__init__(embed_dim, num_heads, num_kv_heads, dropout, bias, rope_base)
