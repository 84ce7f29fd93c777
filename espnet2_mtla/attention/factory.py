"""``build_attention``: one factory for every attention type, by name.

The names are the YAML values of ``attention:``; ``attention_conf:`` holds the
constructor arguments other than embed_dim and num_heads (which the model supplies).
"""

import inspect

from espnet2_mtla.attention.mha import (
    GroupedQueryAttention,
    MultiHeadAttention,
    MultiQueryAttention,
)
from espnet2_mtla.attention.mla import MultiHeadLatentAttention
from espnet2_mtla.attention.mtla import MultiheadTemporalLatentAttention

ATTENTION_CLASSES = {
    "mha": MultiHeadAttention,
    "mqa": MultiQueryAttention,
    "gqa": GroupedQueryAttention,
    "mla": MultiHeadLatentAttention,
    "mtla": MultiheadTemporalLatentAttention,
}


def build_attention(attention_type: str, embed_dim: int, num_heads: int, **conf):
    """Build the attention module ``attention_type`` (mha | mqa | gqa | mla | mtla)."""
    if attention_type not in ATTENTION_CLASSES:
        raise ValueError(
            f"attention type {attention_type!r} is unknown; choose one of "
            f"{', '.join(ATTENTION_CLASSES)}"
        )
    cls = ATTENTION_CLASSES[attention_type]
    accepted = list(inspect.signature(cls.__init__).parameters)[3:]  # after embed_dim, heads
    unknown = sorted(set(conf) - set(accepted))
    if unknown:
        raise ValueError(
            f"attention_conf key(s) {unknown} not accepted by {attention_type!r}; "
            f"accepted: {accepted}"
        )
    missing = [
        name
        for name, param in inspect.signature(cls.__init__).parameters.items()
        if name in accepted and param.default is inspect.Parameter.empty and name not in conf
    ]
    if missing:
        raise ValueError(f"attention {attention_type!r} needs attention_conf key(s) {missing}")
    return cls(embed_dim, num_heads, **conf)
