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

``merge_prefix: false`` keeps MTLA's temporal merging off the prefix: every prefix frame
is a chunk of its own (as MLA stores it) and only the text is merged s positions to a
chunk, the decoder-only counterpart of the paper's encoder-decoder models, whose decoder
cache merges generated tokens and never the source. It is done by positions alone
(``unmerged_prefix_positions``): the attention and its cache need no other mode.

``compile: true`` runs the layers through ``torch.compile`` wherever no decoding cache
is used (training and validation): the merge's and the projections' many small kernels
fuse, which is most of what a latent attention's training step loses to MHA's. The first
batches compile (once at the first shape, once more with dynamic shapes at the next);
decoding stays eager (its caches are host-side state that graphs replay instead).
``compile`` may also name torch.compile's mode: ``reduce-overhead`` replays the compiled
steps from CUDA graphs, which removes the launches of the latent layers' extra kernels
(measured on the stack alone, bench/results/h200_2026-12-01_s19: MLA and MTLA s=2 over
FlexAttention at 1.18-1.25x MHA's step, 1.4-1.7x compiled without graphs); a graph is
recorded per batch shape, so it suits fixed shapes (packed language-model batches).
Replayed from graphs, MTLA's training attention is FlexAttention at every row length
(``flex_at_every_length``); eager and compiled without graphs, from 3,072 tokens on.
MLA's causal training attention is FlexAttention in every compile mode and the flash
kernel eagerly (``attention/mtla.py``, CAUSAL_FLEX_RULE).
"""

from typing import List, Optional, Union

import torch
from torch import nn

from espnet2_mtla.attention import build_attention

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
GRAPH_MODES = ("reduce-overhead", "max-autotune")  # the modes that replay CUDA graphs


def flex_at_every_length(module: nn.Module) -> None:
    """MTLA's training attention in ``module`` through FlexAttention at every row length
    (on CUDA), not only from ``mtla.FLEX_MIN_LENGTH`` on: the faster choice where the
    layers replay from CUDA graphs (no host cost per kernel; H200, 9 x d 512 stack, MTLA
    s=2 at 32x512 / 16x1024: 1.29x / 1.21x MHA's step against the dense mask's 1.69x /
    2.14x, bench/results/h200_2026-12-02_s28), not eagerly or compiled without graphs."""
    for child in module.modules():
        if hasattr(child, "flex_min_length"):
            child.flex_min_length = 0


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

    def forward(self, x, positions, padding, memory=None, cache=None, unmerged_tokens=0,
                layouts=None):
        """x (B, T, D) queried; memory (B, P, D) attended only (its positions and padding
        come first in ``positions``/``padding``, (B, P + T)); unmerged_tokens: leading
        columns in chunks of their own (see ``unmerged_prefix_positions``); layouts: what
        the layers of one stack call share (the attention's ``layouts``)."""
        h = self.attn_norm(x)
        key = h if memory is None else torch.cat([self.attn_norm(memory), h], dim=1)
        x = x + self.dropout(
            self.attn(h, key, position=positions, key_padding_mask=padding, cache=cache,
                      unmerged_tokens=unmerged_tokens, layouts=layouts)
        )
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


def unmerged_prefix_positions(positions, padding, prefix_columns: int, stride: int):
    """Positions (B, P + T) under which merging s = ``stride`` positions to a chunk leaves
    the prefix unmerged: prefix frame p -> p s + s - 1 (the last position of chunk p, a
    chunk of its own), text position L + t -> L s + t (chunks of s from a chunk start),
    L = the row's real prefix frames (padding (B, P + T), True at padding, or None).
    RoPE sees these positions too: the prefix at stride s, the text contiguous."""
    prefix, text = positions[:, :prefix_columns], positions[:, prefix_columns:]
    if padding is None:
        lengths = prefix_columns
    else:
        lengths = (~padding[:, :prefix_columns]).sum(dim=1, keepdim=True)  # (B, 1)
    return torch.cat([prefix * stride + stride - 1, text + lengths * (stride - 1)], dim=1)


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
        merge_prefix: bool = True,
        compile: Union[bool, str] = False,
    ):
        super().__init__()
        if prefix_mode not in ("full", "memory"):
            raise ValueError(f"prefix_mode must be 'full' or 'memory', got {prefix_mode!r}")
        if not isinstance(merge_prefix, bool):
            raise ValueError(f"merge_prefix must be true or false, got {merge_prefix!r}")
        if not (isinstance(compile, bool) or compile in COMPILE_MODES):
            raise ValueError(f"compile must be true, false or one of torch.compile's modes "
                             f"{', '.join(COMPILE_MODES)}; got {compile!r}")
        # torch.compile's mode for the layers, None: eager
        self.compile_mode = "default" if compile is True else (compile or None)
        self.d_model = d_model
        self.prefix_mode = prefix_mode
        self.embed = nn.Embedding(vocab_size, d_model)
        # rows of norm ~1: with the tied output layer, initial logits are O(1), not O(d)
        nn.init.normal_(self.embed.weight, std=d_model ** -0.5)
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, num_heads, ffn_dim, dropout, attention, attention_conf or {})
            for _ in range(num_layers)
        )
        if self.compile_mode in GRAPH_MODES:
            flex_at_every_length(self.layers)
        # s of a merging attention (MTLA), where the prefix is to stay unmerged; else 1
        down_rate = getattr(self.layers[0].attn, "down_rate", 1) if num_layers else 1
        self.prefix_stride = 1 if merge_prefix else down_rate
        self.final_norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.output.weight = self.embed.weight

    def make_caches(self, batch_size, device=None, dtype=None, capacity=0,
                    prefix_columns=0) -> List:
        """One empty cache per layer, preallocated for ``capacity`` tokens, of which the
        first ``prefix_columns`` are the prefix (kept unmerged where merge_prefix is off)."""
        unmerged = prefix_columns if self.prefix_stride > 1 else 0
        return [
            layer.attn.make_cache(batch_size, device, dtype, capacity=capacity,
                                  unmerged_tokens=unmerged)
            for layer in self.layers
        ]

    def forward(self, text_embed, positions, padding, prefix=None, caches=None):
        """Hidden states (B, T, D) of the text positions.

        text_embed (B, T, D); prefix (B, P, D) or None (only given on the first call of a
        cached run); positions/padding (B, P + T) cover prefix then text (padding None:
        nothing padded).
        """
        unmerged = 0
        if prefix is not None and self.prefix_stride > 1:
            unmerged = prefix.shape[1]
            positions = unmerged_prefix_positions(positions, padding, unmerged,
                                                  self.prefix_stride)
        if prefix is not None and self.prefix_mode == "full":
            x = torch.cat([prefix, text_embed], dim=1)
            memory = None
        else:
            x, memory = text_embed, prefix
        if caches is None and self.compile_mode:
            x = self._compiled_layers()(x, positions, padding, memory, unmerged)
        elif caches is None:
            # (training, scoring: the position-only tensors built once for all layers)
            x = self._run_layers(x, positions, padding, memory, unmerged, layouts={})
        else:
            x = self._run_layers(x, positions, padding, memory, unmerged, caches)
        x = self.final_norm(x)
        return x[:, x.shape[1] - text_embed.shape[1] :]

    def _run_layers(self, x, positions, padding, memory, unmerged, caches=None,
                    layouts=None):
        for index, layer in enumerate(self.layers):
            cache = None if caches is None else caches[index]
            x = layer(x, positions, padding, memory=memory, cache=cache,
                      unmerged_tokens=unmerged, layouts=layouts)
        return x

    def _compiled_layers(self):
        """``_run_layers`` through torch.compile, made on first use (a plain attribute,
        not a module: the state dict and parameter names stay those of the eager stack)."""
        compiled = self.__dict__.get("_compiled_run_layers")
        if compiled is None:
            compiled = torch.compile(self._run_layers, mode=self.compile_mode)
            self.__dict__["_compiled_run_layers"] = compiled
        return compiled

    def __getstate__(self):
        state = super().__getstate__()  # (a copy of __dict__)
        state.pop("_compiled_run_layers", None)  # compiled code is remade where it is used
        return state

    def logits(self, hidden):
        return self.output(hidden)
