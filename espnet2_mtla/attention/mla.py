"""Multi-head Latent Attention (MLA, DeepSeek-V2).

MLA is MTLA without temporal merging: every position is its own chunk (down_rate 1)
and latents enter the cache unweighted, so the cache holds T * (r + d_r) numbers. The
math (projections, decoupled RoPE, absorbed decoding) is in mtla.py.
"""

from espnet2_mtla.attention.mtla import MultiheadTemporalLatentAttention


class MultiHeadLatentAttention(MultiheadTemporalLatentAttention):
    """MLA with the parameter names of the MTLA module (no ``hypernet_down``)."""

    has_merge_weights = False

    def __init__(
        self,
        embed_dim,
        num_heads,
        dropout=0.0,
        bias=False,
        q_lora_rank=0,
        kv_lora_rank=256,
        qk_nope_head_dim=64,
        qk_rope_head_dim=32,
        v_head_dim=64,
        *,
        rope_base=10000.0,
        rope_frequencies=None,
        rope_scale=1.0,
    ):
        super().__init__(
            embed_dim,
            num_heads,
            dropout=dropout,
            bias=bias,
            q_lora_rank=q_lora_rank,
            kv_lora_rank=kv_lora_rank,
            qk_nope_head_dim=qk_nope_head_dim,
            qk_rope_head_dim=qk_rope_head_dim,
            v_head_dim=v_head_dim,
            down_rate=1,
            rope_base=rope_base,
            rope_frequencies=rope_frequencies,
            rope_scale=rope_scale,
        )
