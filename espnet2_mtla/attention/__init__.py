"""The attention family: MHA, MQA, GQA, MLA and MTLA, with decoding caches.

Needs only torch. ``build_attention(type, embed_dim, num_heads, **conf)`` builds one by
name; ``espnet2_mtla.attention.choices`` registers the same names with ESPnet.
"""

from espnet2_mtla.attention.cache import KVCache, LatentCache
from espnet2_mtla.attention.factory import ATTENTION_CLASSES, build_attention
from espnet2_mtla.attention.mha import (
    GroupedQueryAttention,
    MultiHeadAttention,
    MultiQueryAttention,
)
from espnet2_mtla.attention.mla import MultiHeadLatentAttention
from espnet2_mtla.attention.mtla import MultiheadTemporalLatentAttention

__all__ = [
    "ATTENTION_CLASSES",
    "GroupedQueryAttention",
    "KVCache",
    "LatentCache",
    "MultiHeadAttention",
    "MultiHeadLatentAttention",
    "MultiQueryAttention",
    "MultiheadTemporalLatentAttention",
    "build_attention",
]
