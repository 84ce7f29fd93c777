"""espnet2-mtla: decoder-only speech and language models with Multi-head Temporal
Latent Attention and its relatives, on ESPnet2.

Importing this package needs only torch; espnet, s3prl and transformers are imported
by the parts that use them.
"""

from espnet2_mtla.attention import (
    MultiHeadLatentAttention,
    MultiheadTemporalLatentAttention,
    build_attention,
)

__version__ = "0.1.0"

__all__ = ["MultiHeadLatentAttention", "MultiheadTemporalLatentAttention", "build_attention"]
