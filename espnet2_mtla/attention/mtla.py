"""Multi-head Temporal Latent Attention (MTLA; Deng & Woodland, NeurIPS 2025).

The whole latent-attention math lives in this file; MLA (mla.py) is its special case
with down_rate 1 and no merge weights.

Notation: x (B, T, D); H heads; r = kv_lora_rank; d_n, d_r, d_v = qk_nope / qk_rope /
v head dims; s = down_rate; p = position.

Projections (DeepSeek-V2 MLA)
    q = W_q x, or W_qb LN(W_qa x) when q_lora_rank > 0; per head q = [q_nope (d_n); q_pe (d_r)]
    [c; k_pe] = W_kva x;  c <- LN(c) (r numbers);  k_pe (d_r) is shared by all heads
    RoPE on q_pe and k_pe (decoupled RoPE); W_kvb maps a latent to k_nope (d_n) and v (d_v)
    per head; scale (d_n + d_r)^-1/2.

Temporal merging (MTLA)
    w_j = sigmoid( (W_c PE(floor(p_j / s))) . (W_p c_j) )   (``hypernet_down``)
    Chunk k holds positions ks .. ks+s-1. After position i of chunk k the chunk's state is
        c^_k = sum_{j in chunk k, p_j <= p_i} w_j c_j,  with rope key k_pe_i (the newest).
    The cache keeps one [c^_k; k_pe] entry per chunk: ceil(T / s) * (r + d_r) numbers.

Training (parallel) and prefill
    Key column j holds the partial chunk state after position j. Query i sees column j
    iff j == i, or p_j < p_i and (p_j + 1) % s == 0 (the stride-aware causal mask): the
    finished chunks plus its own partial chunk, exactly what the cache holds when
    decoding reaches i. Attention runs per head over expanded keys. Training on CUDA
    (gradients on, no cache, no attention dropout) uses FlexAttention over the
    chunk-end columns compacted per row, merged with each query's own column by
    log-sum-exp: memory linear in T (no (B, Tq, Tk) mask, no score tensor) and about 1/s
    of causal attention's work (``kernels/stride_aware_flex.py``). Elsewhere PyTorch's
    scaled_dot_product_attention takes the mask as a (B, 1, Tq, Tk) tensor; an inference
    prefill longer than PREFILL_CHUNK builds it for PREFILL_CHUNK queries at a time
    (memory linear in the prompt, the same outputs). An inference prefill on CUDA with
    nothing padded needs no mask: s = 1 is causal aligned to the bottom right; for s > 1,
    new tokens starting a chunk, the queries at each offset of their chunk attend
    causally over the cache entries and their own column is merged in by log-sum-exp
    (``_strided_prefill``). MLA's training (s = 1, nothing padded) is plain causal
    attention: inside torch.compile causal FlexAttention with values of their own width,
    eagerly the flash kernel over values padded to the query-key width (CAUSAL_FLEX_RULE).

Decoding (one step)
    Merge w_i c_i into the cache (a new entry when i starts a chunk, else added to the
    last one, whose rope key is overwritten), then attend in latent space with W_kvb
    absorbed: q_lat = q_nope W_uk (r per head) against the entries' latents, q_pe against
    their rope keys; the output latent is mapped by W_uv (plus the value bias).

Parameter names and shapes follow the reference ``mtla`` package (wq | wq_a, q_norm,
wq_b; wkv_a; kv_norm; wkv_b; wo; hypernet_down.fc_c, hypernet_down.fc_p), so state dicts
load both ways. Differences from it: chunks follow the given positions rather than
the time index (so left-padded batches work and padding never enters a chunk),
down_rate 1 decodes correctly, a query shorter than the key is always masked
stride-aware, with bias=True the value bias of wkv_b is applied (the reference
drops it; the key bias cancels in the softmax either way), the merge hyper-network's
fc_p starts at zero (see MergeHyperNetwork), and ``offset_gain=True`` (off by default)
scales each normalised latent by a learned gain of its offset in the chunk
(``kv_offset_gain``, (s, r)): c_j <- g_{p_j mod s} * LN(c_j), before the merge.
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.bias import causal_lower_right

from espnet2_mtla.attention.base import (
    SelfAttention,
    attention_mask_to_bias,
    causal_attention_with_lse,
    scaled_dot_product_attention,
    shared,
)
from espnet2_mtla.attention.cache import LatentCache, chunk_slots, merge_chunks
from espnet2_mtla.attention.shared_prefix import SharedPrefixLatentCache, shared_prefix_attention
from espnet2_mtla.attention.rotary import apply_rotary, rotary_angles
from espnet2_mtla.kernels import kernels_enabled, latent_decode_kernel
from espnet2_mtla.kernels.causal_flex import causal_block_mask, causal_flex_attention
from espnet2_mtla.kernels.stride_aware_flex import (
    chunk_end_layout_and_mask,
    stride_aware_flex_attention,
)

# Training rows shorter than this take the dense stride-aware mask (SDPA, O(T^2) memory,
# small at these lengths) instead of FlexAttention (O(T)). Measured on an H200
# (bench/results/h200_2026-11-29_train_profile, MTLA s=2, 9 layers d 512, bf16): the dense
# step took 0.68-0.82x Flex's at 32x512 to 8x2048 and 1.16-1.53x at 4x4096 and 1x16384;
# in the mini recipes (rows of ~100-300) Flex also spent ~40 s compiling in the first
# epoch and made epochs 1.5-2x MHA's (bench/results/h200x2_2026-11-30_mini_recipes).
# Checked with this switch (bench/results/h200x2_2026-11-30_converged): Flex forced below
# it was no faster than dense; latent recipe epochs fell to 1.1-1.35x MHA's.
# With Flex over compacted chunk ends (bench/results/h200_2026-12-01_s18, eager steps):
# dense 0.60-0.78x Flex's at 32x512 to 8x2048, 1.05x at 4x4096, 3.0x at 1x16384.
# Compiled (torch.compile reduce-overhead, bench/results/h200_2026-12-01_s19) the order is
# reversed: dense 23.1 / 30.9 ms against Flex's 17.2 / 17.7 at 32x512 / 16x1024; again in
# session 28 (bench/results/h200_2026-12-02_s28): Flex 1.29x / 1.21x MHA's step, dense
# (s19) 1.69x / 2.14x. Compiled without graphs the host decides again: Flex 1.96x, dense
# 1.52x at 32x512 (s28). So layers replayed from CUDA graphs take Flex at every length
# (``flex_min_length`` 0, set by DecoderOnlyStack for its graph modes), others by length.
FLEX_MIN_LENGTH = 3072
# FlexAttention's compiled kernels need head widths of at least this (torch 2.11: "NYI:
# embedding dimension of the query, key, and value must be at least 16"); narrower heads
# (tiny test models) take the dense mask
FLEX_MIN_HEAD_DIM = 16
# CAUSAL_FLEX_RULE: MLA's causal training attention (s = 1, nothing padded) with values
# narrower than the keys (d_v 64 < d_qk 96) takes causal FlexAttention inside
# torch.compile and the flash kernel over values padded to d_qk eagerly. Measured on an
# H200 (bench/results/h200_2026-12-03_s29, 9 layers d 512, bf16, ratio to MHA's step run
# alike): replayed from CUDA graphs Flex 1.09 / 1.09 / 1.12 / 1.08 / 1.12x at 32x512 /
# 16x1024 / 8x2048 / 4x4096 / 1x16384, padded flash 1.18 / 1.21 / 1.27 / 1.31 / 1.41x;
# compiled without graphs Flex 1.03 / 0.88x, padded 1.57 / 0.99x at 32x512 / 8x2048;
# eagerly Flex 1.86 / 1.51 / 1.59x, padded 1.50 / 1.30 / 1.43x at 32x512 / 4x4096 / 1x16384.
# Inference prefills longer than this attend PREFILL_CHUNK queries at a time: the
# stride-aware mask is built per chunk of queries (B, C, Tk), memory linear in the prompt
PREFILL_CHUNK = 1024
# Devices whose prefill for s > 1 takes _strided_prefill where it applies (no mask, the
# flash kernel); elsewhere the masked path, which needs no log-sum-exp from a private op
STRIDED_PREFILL_DEVICES = ("cuda",)


def sinusoid_inverse_frequencies(dim: int, device=None) -> torch.Tensor:
    """(dim / 2,) float32: 10000^(-2i / dim), the frequencies of sinusoidal_embedding."""
    return torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32)
                     * (-math.log(10000.0) / dim))


def sinusoidal_embedding(index: torch.Tensor, dim: int) -> torch.Tensor:
    """PE (..., dim) of integer indices: sin on even, cos on odd features, base 10000."""
    inv_freq = sinusoid_inverse_frequencies(dim, index.device)
    angle = index.to(torch.float32).unsqueeze(-1) * inv_freq  # (..., dim/2)
    return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(-2)


class MergeHyperNetwork(nn.Module):
    """Merge weight of each position: w_j = sigmoid((W_c PE(chunk_j)) . (W_p c_j)).

    fc_p starts at zero, so every weight starts at sigmoid(0) = 0.5 (a chunk merges to
    the mean of its latents times s / 2) and is learned from there (fc_p's gradient,
    PE-projection x latent, is not zero). nn.Linear's random initialisation, which the
    reference package keeps, instead gives each token a random weight, spread over about
    0.1-0.9 at kv_lora_rank 128 and wider at 256: a byte-level LM probe on an H200
    (bench/lm_probe.py; bench/results/h200_2026-11-29_lm_probe) trained MTLA s=2 to a
    4.3 % higher validation loss than MHA after 2,500 steps with it, 1.2 % with this
    start (MLA: 0.4 %).
    """

    def __init__(self, kv_lora_rank: int, down_rate: int, low_rank: int = 4):
        super().__init__()
        self.kv_lora_rank = kv_lora_rank
        self.down_rate = down_rate
        self.fc_c = nn.Linear(kv_lora_rank, kv_lora_rank // low_rank)
        self.fc_p = nn.Linear(kv_lora_rank, kv_lora_rank // low_rank)
        nn.init.zeros_(self.fc_p.weight)
        nn.init.zeros_(self.fc_p.bias)

    def forward(self, latent: torch.Tensor, positions: torch.Tensor,
                layouts: Optional[dict] = None) -> torch.Tensor:
        """latent (B, T, r), positions (B, T) -> weights (B, T, 1); ``layouts``: the
        chunks' embedding shared by the layers of one stack call (``base.shared``)."""
        def chunk_embedding():  # (B, T, r)
            chunk = torch.div(positions, self.down_rate, rounding_mode="floor")
            return sinusoidal_embedding(chunk, self.kv_lora_rank).to(latent.dtype)

        embedding = shared(layouts, ("chunk_embedding", self.down_rate, self.kv_lora_rank,
                                     latent.dtype), chunk_embedding)
        score = (self.fc_c(embedding) * self.fc_p(latent)).sum(-1, keepdim=True)
        return torch.sigmoid(score)


class MultiheadTemporalLatentAttention(SelfAttention):
    """MTLA; constructor and forward are a drop-in for the reference package's class.

    ``recompute_prompt_attn`` is kept for configuration compatibility: which positions
    are queried is decided by the call itself (``query`` holds the last Tq positions of
    ``key``): the whole prompt (the reference's True) or only the new tokens (False).
    """

    has_merge_weights = True  # MLA sets False: w_j = 1
    supports_weights = True
    # training rows from this length on take FlexAttention (on CUDA); None: FLEX_MIN_LENGTH
    # (0 where the layers replay from CUDA graphs: ``decoder.flex_at_every_length``)
    flex_min_length: Optional[int] = None

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
        down_rate=2,
        recompute_prompt_attn=False,
        *,
        rope_base=10000.0,
        rope_frequencies=None,
        rope_scale=1.0,
        offset_gain=False,
    ):
        """rope_base: RoPE's theta; rope_frequencies: the qk_rope_head_dim / 2 inverse
        frequencies instead of theta's (a rope scaling rule's); rope_scale: factor on the
        rotated query and key parts (YaRN's attention factor); offset_gain: scale each
        normalised latent by a learned gain of its offset in the chunk (``kv_offset_gain``,
        (down_rate, r), starting at one, so the model starts as without it): a merged
        chunk can then keep its tokens in different channels (not in the reference)."""
        super().__init__()
        for name, value in (
            ("embed_dim", embed_dim),
            ("num_heads", num_heads),
            ("kv_lora_rank", kv_lora_rank),
            ("qk_nope_head_dim", qk_nope_head_dim),
            ("qk_rope_head_dim", qk_rope_head_dim),
            ("v_head_dim", v_head_dim),
        ):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(q_lora_rank, int) or q_lora_rank < 0:
            raise ValueError(f"q_lora_rank must be an integer >= 0, got {q_lora_rank!r}")
        if not isinstance(down_rate, int) or down_rate < 1:
            raise ValueError(f"down_rate must be an integer >= 1, got {down_rate!r}")
        if qk_rope_head_dim % 2:
            raise ValueError(f"qk_rope_head_dim={qk_rope_head_dim} must be even for RoPE")
        if self.has_merge_weights and kv_lora_rank % 4:
            raise ValueError(
                f"kv_lora_rank={kv_lora_rank} must be divisible by 4 "
                "(the merge hyper-network projects it to kv_lora_rank / 4)"
            )
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_lora_rank = q_lora_rank
        self.kv_lora_rank = kv_lora_rank
        self.qk_nope_head_dim = qk_nope_head_dim
        self.qk_rope_head_dim = qk_rope_head_dim
        self.qk_head_dim = qk_nope_head_dim + qk_rope_head_dim
        self.v_head_dim = v_head_dim
        self.down_rate = down_rate
        self.recompute_prompt_attn = recompute_prompt_attn
        self.rope_base = float(rope_base)  # RoPE's theta (Llama's rope_theta)
        if rope_frequencies is not None:
            rope_frequencies = tuple(float(f) for f in rope_frequencies)
            if len(rope_frequencies) != qk_rope_head_dim // 2:
                raise ValueError(f"rope_frequencies must hold qk_rope_head_dim / 2 = "
                                 f"{qk_rope_head_dim // 2} numbers, got {len(rope_frequencies)}")
        self.rope_frequencies = rope_frequencies
        self.rope_scale = float(rope_scale)
        self.softmax_scale = self.qk_head_dim**-0.5

        if q_lora_rank == 0:
            self.wq = nn.Linear(embed_dim, num_heads * self.qk_head_dim, bias=bias)
        else:
            self.wq_a = nn.Linear(embed_dim, q_lora_rank, bias=bias)
            self.q_norm = nn.LayerNorm(q_lora_rank)
            self.wq_b = nn.Linear(q_lora_rank, num_heads * self.qk_head_dim, bias=bias)
        self.wkv_a = nn.Linear(embed_dim, kv_lora_rank + qk_rope_head_dim, bias=bias)
        self.kv_norm = nn.LayerNorm(kv_lora_rank)
        self.wkv_b = nn.Linear(
            kv_lora_rank, num_heads * (qk_nope_head_dim + v_head_dim), bias=bias
        )
        self.wo = nn.Linear(num_heads * v_head_dim, embed_dim, bias=bias)
        if self.has_merge_weights:
            self.hypernet_down = MergeHyperNetwork(kv_lora_rank, down_rate)
        if offset_gain:
            self.kv_offset_gain = nn.Parameter(torch.ones(down_rate, kv_lora_rank))
        self.offset_gain = bool(offset_gain)

    def make_cache(self, batch_size, device=None, dtype=None, capacity=0,
                   unmerged_tokens=0) -> LatentCache:
        device, dtype = self._cache_placement(device, dtype)
        return LatentCache(batch_size, self.kv_lora_rank, self.qk_rope_head_dim,
                           self.down_rate, device, dtype, capacity, unmerged_tokens)

    # --- the attention --------------------------------------------------------------
    def _project(self, query, key, positions, layouts=None):
        """The projections before any merge: q_nope (B, Tq, H, d_n) and rotated q_pe
        (B, Tq, H, d_r) of the query (the last Tq positions), the normalised latent
        (B, Tk, r; times its offset gain where on) and rotated rope key (B, Tk, d_r)."""
        batch, query_len, _ = query.shape
        key_len = key.shape[1]
        angles = shared(  # (B, Tk, d_r/2, 2)
            layouts, ("rotary", self.qk_rope_head_dim, self.rope_base, self.rope_frequencies,
                      self.rope_scale),
            lambda: rotary_angles(positions, self.qk_rope_head_dim, self.rope_base,
                                  self.rope_frequencies, self.rope_scale))

        q = self.wq(query) if self.q_lora_rank == 0 else self.wq_b(self.q_norm(self.wq_a(query)))
        q = q.view(batch, query_len, self.num_heads, self.qk_head_dim)
        q_nope, q_pe = q.split([self.qk_nope_head_dim, self.qk_rope_head_dim], dim=-1)
        q_pe = apply_rotary(q_pe, angles[:, key_len - query_len :])  # (B, Tq, H, d_r)

        latent, k_pe = self.wkv_a(key).split([self.kv_lora_rank, self.qk_rope_head_dim], -1)
        latent = self.kv_norm(latent)  # (B, Tk, r)
        if self.offset_gain:  # each token's gain by its offset in its chunk
            # (one-hot product, not indexing: indexing's backward accumulates B x T rows
            # into s rows with atomics, 3x slower steps in the LM probe on an H200)
            offset = F.one_hot(positions % self.down_rate, self.down_rate)  # (B, Tk, s)
            latent = latent * (offset.to(latent.dtype) @ self.kv_offset_gain.to(latent.dtype))
        k_pe = apply_rotary(k_pe, angles)  # (B, Tk, d_r)
        return q_nope, q_pe, latent, k_pe

    def _attend(self, query, key, positions, key_padding_mask, attn_bias, cache,
                need_weights=False, unmerged_tokens=0, layouts=None):
        """need_weights: also return (probabilities (B, H, Tq, K), key positions (B, K)):
        each key is a chunk state, placed at the newest position it sums up to."""
        query_len, key_len = query.shape[1], key.shape[1]
        q_nope, q_pe, latent, k_pe = self._project(query, key, positions, layouts)
        merge = self.hypernet_down if self.has_merge_weights else None
        if cache is not None and query_len == key_len == 1 and key_padding_mask is None:
            # the decoding step: w_j c_j merged into the cache (by its kernels on CUDA)
            cache.add_step(latent[:, 0], k_pe[:, 0], positions[:, 0], merge)
            return self._decode_step(q_nope, q_pe, cache, need_weights)
        if merge is not None:
            latent = latent * merge(latent, positions, layouts)  # w_j c_j
        if key_padding_mask is not None:
            latent = latent.masked_fill(key_padding_mask[..., None], 0.0)

        # s > 1, inference on CUDA, nothing padded: the held entries and the new chunks'
        # entries without a mask, each query's own column merged in (_strided_prefill)
        strided = (self.down_rate > 1 and query.device.type in STRIDED_PREFILL_DEVICES
                   and kernels_enabled()
                   and query_len == key_len > 1 and key_padding_mask is None
                   and attn_bias is None and not need_weights and unmerged_tokens == 0
                   and not torch.is_grad_enabled() and not self.training)
        if cache is None and self.down_rate == 1:
            # nothing to cache and every position a chunk of its own (MLA training): the
            # columns are the latents themselves (zero at padding), no merge to run
            columns, continues = latent, None
        else:
            carry = None if cache is None else cache.tail()  # it may be continued here
            # (the chunks' entries: for the cache and the strided prefill; not in training)
            slots = shared(layouts, ("chunk_slots", self.down_rate, unmerged_tokens),
                           lambda: chunk_slots(positions, key_padding_mask, self.down_rate,
                                               unmerged_tokens))
            merged = merge_chunks(latent, k_pe, positions, key_padding_mask, carry,
                                  self.down_rate, unmerged_tokens,
                                  with_entries=cache is not None or strided, slots=slots)
            columns, first_chunk, chunk_entries, chunk_valid, continues = merged

        if cache is not None and query_len == key_len == 1:  # a step with padding
            cache.write(first_chunk, chunk_entries, chunk_valid, positions, key_padding_mask)
            return self._decode_step(q_nope, q_pe, cache, need_weights)

        # keys: cached entries still visible, then one column per new token
        no_cache_read = query_len == key_len and (cache is None or cache.max_entries == 0)
        # training on CUDA: FlexAttention over the compacted chunk ends, O(T) memory
        # (FlexAttention has no attention dropout; inference keeps SDPA, which needs no
        # compilation per new shape)
        # (MLA without padding is plain causal: SDPA's flash kernel, not FlexAttention;
        # rows shorter than flex_min_length: the dense mask, faster there unless graphed)
        min_length = FLEX_MIN_LENGTH if self.flex_min_length is None else self.flex_min_length
        use_flex = (no_cache_read and attn_bias is None and query.is_cuda and not need_weights
                    and kernels_enabled() and torch.is_grad_enabled()
                    and key_len >= min_length
                    and min(self.qk_head_dim, self.v_head_dim) >= FLEX_MIN_HEAD_DIM
                    and not (self.training and self.dropout > 0)
                    and (self.down_rate > 1 or key_padding_mask is not None))
        causal = (self.down_rate == 1 and key_padding_mask is None and not need_weights
                  and attn_bias is None and no_cache_read)  # with s = 1: plain causal
        # MLA training on CUDA, values narrower than the keys, inside torch.compile:
        # causal FlexAttention with values of their own width (kernels/causal_flex.py);
        # eagerly the flash kernel over values padded to the query-key width
        # (CAUSAL_FLEX_RULE)
        causal_flex = (causal and query.is_cuda and kernels_enabled()
                       and torch.is_grad_enabled() and torch.compiler.is_compiling()
                       and FLEX_MIN_HEAD_DIM <= self.v_head_dim < self.qk_head_dim
                       and not (self.training and self.dropout > 0))
        chunked = (not (use_flex or causal) and query_len > PREFILL_CHUNK and attn_bias is None
                   and not need_weights and not torch.is_grad_enabled())
        held_valid = None  # (B, N): the cached entries each query sees, before the columns

        def visible_rows(start, stop):  # (B, stop - start, Tk) for queries start .. stop - 1
            rows = self._stride_aware_mask(positions, query_len, key_padding_mask, start, stop)
            if held_valid is None:
                return rows
            return torch.cat([held_valid[:, None, :].expand(-1, stop - start, -1), rows], 2)

        key_latent, key_rope = columns, k_pe
        key_positions = (positions if key_padding_mask is None
                         else positions.masked_fill(key_padding_mask, -1))  # (B, Tk)
        num_held = self._strided_prefill_holds(positions, cache, continues) if strided else None
        if num_held is not None:
            entries = chunk_entries
            if cache is not None:
                cache.write(first_chunk, chunk_entries, chunk_valid, positions, None)
                entries = cache.entries  # held, then the new ones just written
            return self._strided_prefill(q_nope, q_pe, columns, k_pe, entries, num_held)
        if cache is not None and cache.max_entries > 0:
            entries, valid = cache.held()
            if continues is not None:
                # the newest entry is superseded by the columns of the chunk it continues
                last = torch.arange(entries.shape[1], device=valid.device) == (
                    cache.num_entries[:, None] - 1
                )
                valid = valid & ~(last & continues[:, None])
            key_latent = torch.cat([entries[..., : self.kv_lora_rank], columns], dim=1)
            key_rope = torch.cat([entries[..., self.kv_lora_rank :], k_pe], dim=1)
            held_valid = valid
            if need_weights:
                key_positions = torch.cat([self._entry_positions(cache, valid), key_positions], 1)
        if cache is not None:
            cache.write(first_chunk, chunk_entries, chunk_valid, positions, key_padding_mask)
        if causal_flex:
            q, k, v = self._expand_heads(q_nope, q_pe, key_latent, key_rope)
            block_mask = shared(layouts, ("causal_block_mask", key_len),
                                lambda: causal_block_mask(key_len, q.device))
            out = causal_flex_attention(q, k, v, self.softmax_scale, block_mask)
            return self.wo(out.transpose(1, 2).flatten(2))  # out (B, H, T, d_v)
        if use_flex:
            return self._flex_attention(q_nope, q_pe, columns, k_pe, positions,
                                        key_padding_mask, unmerged_tokens, layouts=layouts)
        # MLA after a cache with every held entry valid, nothing padded: each query sees
        # every held entry and the new columns up to its own, causal aligned to the
        # bottom right (a flash kernel on CUDA, no mask; one host sync per layer)
        if (self.down_rate == 1 and held_valid is not None and key_padding_mask is None
                and attn_bias is None and not need_weights and bool(held_valid.all())):
            return self._expanded_attention(q_nope, q_pe, key_latent, key_rope, None, None)
        if chunked:
            return self._chunked_prefill(q_nope, q_pe, key_latent, key_rope, visible_rows)
        visible = None if causal else shared(
            layouts, ("stride_mask", self.down_rate, query_len),
            lambda: visible_rows(0, query_len))
        if need_weights:
            out, weights = self._expanded_attention(q_nope, q_pe, key_latent, key_rope,
                                                    visible, attn_bias, need_weights=True)
            return out, (weights, key_positions)
        return self._expanded_attention(q_nope, q_pe, key_latent, key_rope, visible, attn_bias)

    def _entry_positions(self, cache, valid):
        """(B, N): the newest position each held entry sums up to; -1 where not valid."""
        chunk = cache.first_chunk[:, None] + torch.arange(valid.shape[1], device=valid.device)
        newest = torch.minimum((chunk + 1) * self.down_rate - 1, cache.next_position[:, None] - 1)
        return torch.where(valid, newest, -1)

    def _stride_aware_mask(self, positions, query_len, padding, start=0, stop=None):
        """(B, Tq, Tk): query i sees itself and the columns that end a chunk before it
        (only queries start .. stop - 1 of the Tq: (B, stop - start, Tk))."""
        key_len = positions.shape[1]
        first = key_len - query_len  # the key column of query 0
        stop = query_len if stop is None else stop
        query_pos = positions[:, first + start : first + stop]
        ends_chunk = (positions + 1) % self.down_rate == 0  # (B, Tk)
        visible = (positions[:, None, :] < query_pos[:, :, None]) & ends_chunk[:, None, :]
        if padding is not None:
            visible = visible & ~padding[:, None, :]
        query_index = torch.arange(first + start, first + stop, device=positions.device)
        own = torch.arange(key_len, device=positions.device)[None, :] == query_index[:, None]
        return visible | own

    def _value_bias(self):
        if self.wkv_b.bias is None:
            return None
        return self.wkv_b.bias.view(self.num_heads, -1)[:, self.qk_nope_head_dim :]

    def _expand_heads(self, q_nope, q_pe, key_latent, key_rope):
        """Per-head q, k (B, H, T, d_n + d_r) and v (B, H, Tk, d_v) from the latents."""
        batch, num_keys, _ = key_latent.shape
        heads = self.num_heads
        kv = self.wkv_b(key_latent).view(batch, num_keys, heads, -1)
        k_nope, v = kv.split([self.qk_nope_head_dim, self.v_head_dim], dim=-1)
        k = torch.cat([k_nope, key_rope[:, :, None, :].expand(-1, -1, heads, -1)], dim=-1)
        q = torch.cat([q_nope, q_pe], dim=-1)  # (B, Tq, H, d_n + d_r)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def _expand_keys_padded(self, key_latent, key_rope):
        """Per-head k (B, H, Tk, d_n + d_r) and v zero-padded to the same width (the flash
        kernel's one head width), as views of one (B, Tk, H, 2 (d_n + d_r)) buffer that a
        single matmul writes: no separate k_nope / v tensor, no concatenation, no pad."""
        batch, num_keys, rank = key_latent.shape
        heads, d_n, d_r, d_v = (self.num_heads, self.qk_nope_head_dim, self.qk_rope_head_dim,
                                self.v_head_dim)
        width = d_n + d_r
        if d_v > width:
            raise ValueError(f"v_head_dim {d_v} wider than the query-key head {width}")
        # per head: [W_uk (d_n) | zeros for the rope key (d_r) | W_uv (d_v) | zeros]
        weight = self.wkv_b.weight.view(heads, d_n + d_v, rank)
        padded = weight.new_zeros(heads, 2 * width, rank)
        padded[:, :d_n] = weight[:, :d_n]
        padded[:, width : width + d_v] = weight[:, d_n:]
        bias = None
        if self.wkv_b.bias is not None:
            bias = self.wkv_b.bias.new_zeros(heads, 2 * width)
            bias[:, :d_n] = self.wkv_b.bias.view(heads, -1)[:, :d_n]
            bias[:, width : width + d_v] = self.wkv_b.bias.view(heads, -1)[:, d_n:]
            bias = bias.flatten()
        kv = F.linear(key_latent, padded.flatten(0, 1), bias).view(batch, num_keys, heads,
                                                                    2 * width)
        kv[..., d_n:width] = key_rope[:, :, None, :]  # the rope key, shared by the heads
        return kv[..., :width].transpose(1, 2), kv[..., width:].transpose(1, 2)

    def _expanded_attention(self, q_nope, q_pe, key_latent, key_rope, visible, attn_bias,
                            need_weights=False):
        """Per-head attention over keys expanded from latents (prefill; training on CPU).

        visible: (B, Tq, Tk) boolean, or None for causal attention aligned to the bottom
        right (query i sees keys up to Tk - Tq + i: plain causal when Tq == Tk, after
        Tk - Tq cached keys otherwise).
        need_weights (visible given): the probabilities formed explicitly, returned too:
        (out, (B, H, Tq, Tk)).
        """
        value_width = self.v_head_dim
        if (visible is None and attn_bias is None and q_nope.is_cuda
                and not torch.is_grad_enabled() and value_width < self.qk_head_dim):
            # inference through the flash kernel: keys and padded values from one buffer
            q = torch.cat([q_nope, q_pe], dim=-1).transpose(1, 2)  # (B, H, Tq, d_qk)
            k, v = self._expand_keys_padded(key_latent, key_rope)
        else:
            q, k, v = self._expand_heads(q_nope, q_pe, key_latent, key_rope)
        mask = None if visible is None else visible[:, None]  # (B, 1, Tq, Tk)
        after_cache = visible is None and k.shape[2] != q.shape[2]
        if after_cache:  # (torch's bias object: flash and efficient kernels take it)
            mask = causal_lower_right(q.shape[2], k.shape[2])
        if attn_bias is not None:
            mask = attention_mask_to_bias(mask, q.dtype, attn_bias)
        if need_weights:
            scores = torch.matmul(q, k.transpose(-1, -2)).float() * self.softmax_scale
            scores = (scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool
                      else scores + mask.float())
            probs = scores.softmax(dim=-1).to(q.dtype)  # (B, H, Tq, Tk)
            out = torch.matmul(F.dropout(probs, self.dropout, self.training), v)
            return self.wo(out.transpose(1, 2).flatten(2)), probs
        if (mask is None or after_cache) and q.is_cuda and v.shape[-1] < q.shape[-1]:
            # the flash kernel wants one head width: values padded with zeros (the extra
            # output columns are zero and dropped); otherwise SDPA takes a slower kernel
            v = F.pad(v, (0, q.shape[-1] - value_width))
        out = scaled_dot_product_attention(
            q, k, v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=visible is None and not after_cache,
            scale=self.softmax_scale,
        )[..., :value_width]  # (B, H, Tq, d_v)
        del q, k, v, mask  # (the expanded keys go before the output projection's buffers)
        return self.wo(out.transpose(1, 2).flatten(2))

    def _chunked_prefill(self, q_nope, q_pe, key_latent, key_rope, visible_rows):
        """The inference prefill's attention, PREFILL_CHUNK queries at a time, each chunk
        with its rows of the stride-aware mask (``visible_rows(start, stop)``): the same
        outputs as one call, with memory linear in the prompt."""
        q, k, v = self._expand_heads(q_nope, q_pe, key_latent, key_rope)
        out = torch.cat([
            scaled_dot_product_attention(
                q[:, :, start : start + PREFILL_CHUNK], k, v, scale=self.softmax_scale,
                attn_mask=visible_rows(start, min(start + PREFILL_CHUNK, q.shape[2]))[:, None])
            for start in range(0, q.shape[2], PREFILL_CHUNK)], dim=2)  # (B, H, Tq, d_v)
        return self.wo(out.transpose(1, 2).flatten(2))

    def _strided_prefill(self, q_nope, q_pe, columns, k_pe, entries, num_held):
        """The prefill's attention for s > 1 without a mask, when nothing is padded, the
        new tokens start a chunk and every row holds ``num_held`` entries before them.

        Query i = m s + o (offset o in its chunk m of the new tokens) sees the held
        entries, the entries of new chunks 0 .. m - 1 and its own column (the partial
        state of chunk m after it). Taken offset by offset, the M_o queries at offset o
        see the first num_held + m of ``entries``: causal attention aligned to the bottom
        right over num_held + M_o - 1 keys (the flash kernel on CUDA, no mask); the own
        column is merged in by the log-sum-exp of the rest (as the training path's
        FlexAttention does). Each key is expanded once: s times fewer than the columns.
        q_nope (B, C, H, d_n), q_pe (B, C, H, d_r); columns (B, C, r), k_pe (B, C, d_r);
        entries (B, >= num_held + ceil(C / s), r + d_r): held then new, all valid.
        """
        s, rank = self.down_rate, self.kv_lora_rank
        batch, length, heads, _ = q_nope.shape
        num_keys = num_held + (length + s - 1) // s - 1  # the most any offset reads
        k, v = self._expand_keys_padded(entries[:, :num_keys, :rank],
                                        entries[:, :num_keys, rank:])  # (B, H, N, d_qk)
        out = q_nope.new_empty(batch, length, heads, self.v_head_dim)  # wo's layout
        for offset in range(min(s, length)):
            out[:, offset::s] = self._strided_offset(
                q_nope[:, offset::s], q_pe[:, offset::s], columns[:, offset::s],
                k_pe[:, offset::s], k, v, num_held).transpose(1, 2)
        del k, v  # (the expanded keys go before the output projection's buffers come)
        return self.wo(out.flatten(2))

    def _strided_offset(self, q_nope, q_pe, columns, k_pe, k, v, num_held):
        """(B, H, M, d_v): the M queries of one chunk offset (q_nope (B, M, H, d_n),
        q_pe (B, M, H, d_r); their own columns (B, M, r) and rope keys (B, M, d_r)) over
        the first num_held + m expanded keys k, v (B, H, N, d_qk) and their own column;
        its temporaries are gone when it returns."""
        width = self.v_head_dim  # (the padded value columns are zero: left out)
        query = torch.cat([q_nope, q_pe], dim=-1).transpose(1, 2)  # (B, H, M, d_n + d_r)
        own_k, own_v = self._expand_keys_padded(columns, k_pe)
        seen = num_held + query.shape[2] - 1
        if seen == 0:  # one query, nothing before it: its own column alone
            return own_v[..., :width]
        before, lse = causal_attention_with_lse(query, k[:, :, :seen], v[:, :, :seen],
                                                self.softmax_scale)
        # (products in the input dtype, summed in float32: no float32 copies)
        own_score = (query * own_k).sum(-1, dtype=torch.float32) * self.softmax_scale
        own_weight = torch.sigmoid(own_score - lse)  # its share of the softmax
        return torch.lerp(before[..., :width], own_v[..., :width],
                          own_weight.to(v.dtype)[..., None])

    def _strided_prefill_holds(self, positions, cache, continues):
        """How many entries each row holds before the new tokens if ``_strided_prefill``
        applies (the rows start a chunk, continue none and hold equally many), else
        None; one host sync."""
        applies = (positions[:, 0] % self.down_rate == 0).all()
        held = positions.new_zeros(())
        if continues is not None:
            applies = applies & ~continues.any()
        if cache is not None:
            held = cache.num_entries[0]
            applies = applies & (cache.num_entries == held).all()
        applies, held = torch.stack([applies.long(), held]).tolist()
        return held if applies else None

    def _flex_attention(self, q_nope, q_pe, key_latent, key_rope, positions, padding,
                        unmerged_tokens=0, compiled=True, layouts=None):
        """Attention over expanded keys under the stride-aware mask, O(T) memory; the
        chunk ends' layout and block mask shared by the layers of a stack call."""
        q, k, v = self._expand_heads(q_nope, q_pe, key_latent, key_rope)
        layout = shared(layouts, ("chunk_ends", self.down_rate, unmerged_tokens),
                        lambda: chunk_end_layout_and_mask(positions, padding, self.down_rate,
                                                          unmerged_tokens))
        out = stride_aware_flex_attention(
            q, k, v, positions, padding, self.down_rate, self.softmax_scale, compiled,
            unmerged_tokens, layout=layout,
        )  # (B, H, T, d_v)
        return self.wo(out.transpose(1, 2).flatten(2))

    def _decode_attention_torch(self, q_full, cache, need_weights=False):
        """(B, H, 1, r): softmax over the valid entries of q_full . entries, times latents
        (need_weights: and the probabilities (B, H, 1, N) with the entries' positions)."""
        rank = self.kv_lora_rank
        entries, held = cache.held()  # (B, N, r + d_r), (B, N)
        valid = held | (torch.arange(held.shape[1], device=held.device) == 0)  # no empty row
        # (a row with no entry yet attends to a zero entry: finite, and its output unused)
        scores = torch.matmul(q_full, entries[:, None].transpose(-1, -2)) * self.softmax_scale
        scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))  # (B, H, 1, N)
        probs = scores.softmax(dim=-1)
        out = torch.matmul(F.dropout(probs, self.dropout, self.training),
                           entries[:, None, :, :rank])
        if need_weights:
            return out, (probs, self._entry_positions(cache, held))
        return out

    def _decode_step(self, q_nope, q_pe, cache, need_weights=False):
        """One query per row against all cached entries, in latent space (W_kvb absorbed)."""
        rank = self.kv_lora_rank
        w_kvb = self.wkv_b.weight.view(self.num_heads, -1, rank)  # (H, d_n + d_v, r)
        w_uk, w_uv = w_kvb.split([self.qk_nope_head_dim, self.v_head_dim], dim=1)
        q_latent = torch.einsum("bqhd,hdr->bhqr", q_nope, w_uk)  # (B, H, 1, r)
        q_full = torch.cat([q_latent, q_pe.transpose(1, 2)], dim=-1)  # (B, H, 1, r + d_r)
        weights = None
        kernel = None if self.training and self.dropout > 0 else latent_decode_kernel(q_full, rank)
        if isinstance(cache, SharedPrefixLatentCache):  # (beam search)
            if need_weights:
                raise ValueError("attention weights are not given over a prefix shared by "
                                 "beams (share_prefix): decode without it to see them")
            out_latent = shared_prefix_attention(q_full, cache, self.softmax_scale)
        elif need_weights:
            out_latent, weights = self._decode_attention_torch(q_full, cache, need_weights=True)
        elif kernel is not None:  # Triton flash-decoding over the whole cache
            out_latent = kernel(
                q_full[:, :, 0], cache.entries, cache.num_entries, rank,
                self.softmax_scale, cache.read_entries,
            )[:, :, None]  # (B, H, 1, r)
        else:
            out_latent = self._decode_attention_torch(q_full, cache)
        out = torch.einsum("bhqr,hvr->bqhv", out_latent, w_uv)  # (B, 1, H, d_v)
        value_bias = self._value_bias()
        if value_bias is not None:
            out = out + value_bias
        out = self.wo(out.flatten(2))
        return out if weights is None else (out, weights)
