"""The decoder-only stack: pre-norm layers of self-attention (from the factory) and a
feed-forward network, over token embeddings, with an optional prefix.

Prefix modes (DESIGN.md section 4):
- ``full``: the prefix is the start of the sequence and runs through every layer, as in a
  plain decoder-only LM: layer input [prefix; text], all positions queried.
- ``memory``: every layer's self-attention keys/values are [prefix; text states] while
  only the text is queried; the prefix itself is never updated by the layers (each layer
  sees the same prefix through its own key/value projection). With MTLA the prefix is
  compressed like any other key.

No absolute position embedding: the attention applies RoPE from explicit positions.
"""

from typing import List, Optional

import torch
from torch import nn

from espnet2_mtla.attention import build_attention


class FeedForward(nn.Module):
    def __init__(self, d_model: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.w_in = nn.Linear(d_model, ffn_dim)
        self.w_out = nn.Linear(ffn_dim, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.w_out(self.dropout(torch.relu(self.w_in(x))))


class DecoderLayer(nn.Module):
    """x + Attn(LN(x)); x + FFN(LN(x))."""

    def __init__(self, d_model, num_heads, ffn_dim, dropout, attention, attention_conf):
        super().__init__()
        self.attn_norm = nn.LayerNorm(d_model)
        self.attn = build_attention(attention, d_model, num_heads, **attention_conf)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, positions, padding, memory=None, cache=None):
        """x (B, T, D) queried; memory (B, P, D) attended only (its positions and padding
        come first in ``positions``/``padding``, (B, P + T))."""
        h = self.attn_norm(x)
        key = h if memory is None else torch.cat([self.attn_norm(memory), h], dim=1)
        x = x + self.dropout(
            self.attn(h, key, position=positions, key_padding_mask=padding, cache=cache)
        )
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class DecoderOnlyStack(nn.Module):
    """Token embedding, ``num_layers`` decoder layers, final norm and output projection."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 256,
        num_heads: int = 4,
        num_layers: int = 6,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        attention: str = "mtla",
        attention_conf: Optional[dict] = None,
        prefix_mode: str = "memory",
        tie_embeddings: bool = True,
    ):
        super().__init__()
        if prefix_mode not in ("full", "memory"):
            raise ValueError(f"prefix_mode must be 'full' or 'memory', got {prefix_mode!r}")
        self.d_model = d_model
        self.prefix_mode = prefix_mode
        self.embed = nn.Embedding(vocab_size, d_model)
        # rows of norm ~1: with the tied output layer, initial logits are O(1), not O(d)
        nn.init.normal_(self.embed.weight, std=d_model ** -0.5)
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, num_heads, ffn_dim, dropout, attention, attention_conf or {})
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.output.weight = self.embed.weight

    def make_caches(self, batch_size, device=None, dtype=None, capacity=0) -> List:
        """One empty cache per layer, preallocated for ``capacity`` tokens."""
        return [
            layer.attn.make_cache(batch_size, device, dtype, capacity=capacity)
            for layer in self.layers
        ]

    def forward(self, text_embed, positions, padding, prefix=None, caches=None):
        """Hidden states (B, T, D) of the text positions.

        text_embed (B, T, D); prefix (B, P, D) or None (only given on the first call of a
        cached run); positions/padding (B, P + T) cover prefix then text (padding None:
        nothing padded).
        """
        if prefix is not None and self.prefix_mode == "full":
            x = torch.cat([prefix, text_embed], dim=1)
            memory = None
        else:
            x, memory = text_embed, prefix
        for index, layer in enumerate(self.layers):
            cache = None if caches is None else caches[index]
            x = layer(x, positions, padding, memory=memory, cache=cache)
        x = self.final_norm(x)
        return x[:, x.shape[1] - text_embed.shape[1] :]

    def logits(self, hidden):
        return self.output(hidden)
