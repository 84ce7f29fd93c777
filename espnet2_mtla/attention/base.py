"""The calling convention shared by every attention type (argument checks, positions,
where the cache lives). The attention math itself is in mha.py and mtla.py.

One call covers training, prefill and decoding:

    out = attn(query, key, position=pos, key_padding_mask=pad, cache=cache)

- ``key`` (B, Tk, D) is the input the keys and values are projected from (self-attention:
  the query sequence, possibly preceded by a prefix such as a speech encoder output).
  ``query`` (B, Tq, D) holds the last Tq of those positions, Tq <= Tk. ``key=None``
  means ``key = query``.
- ``position`` (B, Tk) or (1, Tk): integer positions of the ``key`` tokens (float is
  accepted if integral, as the reference package passes floats). Default: 0..Tk-1, or
  continuing from the cache. Within a row, real tokens must carry consecutive positions.
- ``key_padding_mask`` (B, Tk), True at padding. Padding may sit on the left or the right;
  a padded token is never attended to and never enters a cache. Outputs at padded query
  positions are finite but meaningless.
- ``cache``: a cache from ``make_cache``; the ``key`` tokens are appended to it and the
  queries attend to everything cached before them. ``incremental_state`` (a dict, fairseq
  style, as the reference package uses) holds such a cache per module instead.
"""

import uuid
from typing import Optional

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

# cuDNN attention builds an execution plan per new key length, i.e. per decoding step
# (measured: ~70 ms each on an H100); the flash and memory-efficient kernels do not.
_SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def scaled_dot_product_attention(*args, **kwargs):
    """torch's scaled_dot_product_attention without the cuDNN backend."""
    with sdpa_kernel(_SDPA_BACKENDS):
        return torch.nn.functional.scaled_dot_product_attention(*args, **kwargs)


def causal_attention_with_lse(q, k, v, scale):
    """Causal attention aligned to the bottom right (query i of Tq sees keys 0 .. Tk - Tq
    + i) that also returns each query's log-sum-exp of its scaled scores, so that a
    caller can merge it with attention over other keys.

    q (B, H, Tq, d), k (B, H, Tk, d), v (B, H, Tk, d_v); only the last dimension need
    be contiguous. Returns out (B, H, Tq, d_v) and lse (B, H, Tq) float32 (natural log);
    a query that sees no key (i < Tq - Tk) gets out 0 and lse -inf.
    On CUDA the aten ops that torch.nn.attention.bias.causal_lower_right dispatches to
    (they return the log-sum-exp; SDPA's public call does not): the flash kernel for
    fp16 / bf16 with d_v == d <= 256, the memory-efficient one otherwise. Elsewhere the
    scores are formed explicitly (float32).
    """
    query_len, key_len, value_width = q.shape[2], k.shape[2], v.shape[-1]
    blind = max(0, query_len - key_len)
    if blind:  # the first queries see no key: the kernels run on the others only
        out = q.new_zeros(*q.shape[:-1], value_width)
        lse = torch.full(q.shape[:-1], float("-inf"), device=q.device)
        if blind < query_len:
            out[:, :, blind:], lse[:, :, blind:] = causal_attention_with_lse(
                q[:, :, blind:], k, v, scale)
        return out, lse
    flash = (q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
             and value_width == q.shape[-1] <= 256 and q.shape[-1] % 8 == 0)
    if flash:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(
            q, k, v, 0.0, is_causal=True, scale=scale)[:2]  # (its causal: bottom right)
    elif q.is_cuda:
        out, lse = torch.ops.aten._efficient_attention_forward(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), None, None, None,
            None, None, 0.0, 2, True, scale=scale)[:2]  # mask type 2: causal, bottom right
        out, lse = out.transpose(1, 2), lse[..., :query_len]  # (lse padded to 32 rows)
    else:
        scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
        seen = (torch.arange(key_len, device=q.device)[None, :]
                <= torch.arange(query_len, device=q.device)[:, None] + key_len - query_len)
        scores = scores.masked_fill(~seen, float("-inf"))  # (B, H, Tq, Tk)
        lse = torch.logsumexp(scores, dim=-1)
        probs = torch.exp(scores - lse[..., None]).nan_to_num(0.0)
        out = torch.matmul(probs, v.float()).to(v.dtype)
    return out, lse.float()


class SelfAttention(nn.Module):
    """Base class: validates a call and hands a normalised one to ``_attend``."""

    embed_dim: int
    supports_weights = False  # need_weights=True answered (see forward)

    def __init__(self):
        super().__init__()
        self._state_key = f"{type(self).__name__}.{uuid.uuid4()}"

    # --- to implement per type -------------------------------------------------------
    def make_cache(self, batch_size: int, device=None, dtype=None, capacity: int = 0,
                   unmerged_tokens: int = 0):
        """An empty cache for ``batch_size`` rows, preallocated for ``capacity`` tokens
        (it grows past them); device and dtype default to the module's.
        ``unmerged_tokens``: how many leading steps the caller keeps out of temporal
        merging (their positions each end a chunk); only caches that merge use it."""
        raise NotImplementedError

    def _attend(self, query, key, positions, key_padding_mask, attn_bias, cache,
                unmerged_tokens=0, layouts=None):
        raise NotImplementedError

    # --- shared entry point ------------------------------------------------------------
    def forward(
        self,
        query: torch.Tensor,
        key: Optional[torch.Tensor] = None,
        value: Optional[torch.Tensor] = None,
        key_padding_mask: Optional[torch.Tensor] = None,
        self_attn_mask: Optional[torch.Tensor] = None,
        position: Optional[torch.Tensor] = None,
        incremental_state: Optional[dict] = None,
        need_weights: bool = False,
        use_flashattn_infer: bool = False,
        *,
        cache=None,
        unmerged_tokens: int = 0,
        layouts: Optional[dict] = None,
    ) -> torch.Tensor:
        """Attend; returns (B, Tq, D).

        ``value`` is accepted for drop-in compatibility with the reference package and
        must have the shape of ``key`` (keys and values are both projected from ``key``).
        ``self_attn_mask`` (Tq, Tk) is an additive float mask applied on top of the
        type's own causal mask; it is only allowed when no cached tokens are attended.
        ``need_weights``: return ``(out, (weights, key_positions))`` instead, where the
        types that support it (``supports_weights``: MLA, MTLA) give the attention
        probabilities (B, H, Tq, K) over the K keys of the call and the newest position
        each key covers (B, K; -1 for a key that is not one), on the explicit (slower)
        path. ``use_flashattn_infer`` is accepted and ignored (the decode kernel is
        picked automatically). ``unmerged_tokens``: how many leading key columns the
        caller placed each in a chunk of its own (positions that end a chunk: an unmerged
        prefix, see ``model.decoder.unmerged_prefix_positions``); a bound for the types that
        merge (MTLA), ignored by the others. ``layouts``: a dict that the layers of one
        stack call share (same positions, padding and lengths in every layer): what
        depends on those alone (rotary angles, MTLA's chunk embedding, slot table and
        stride-aware mask, FlexAttention's block mask) is built by the first layer and
        reused by the others (``shared``); ignored in a call with a cache.
        """
        if need_weights and not self.supports_weights:
            raise NotImplementedError(f"{type(self).__name__} does not return attention "
                                      "weights (need_weights=True); MLA and MTLA do")
        if key is None:
            key = query
        self._check_inputs(query, key, value)
        batch, key_len = key.shape[0], key.shape[1]
        if incremental_state is not None:
            if cache is not None:
                raise ValueError("pass either cache or incremental_state, not both")
            cache = incremental_state.get(self._state_key)
            if cache is None:
                cache = self.make_cache(batch, device=key.device, dtype=key.dtype)
                incremental_state[self._state_key] = cache
        if cache is not None:  # (what a cached call builds depends on its cache: per call)
            layouts = None
        if cache is not None and cache.batch_size != batch:
            raise ValueError(
                f"cache holds batch {cache.batch_size} but the input has batch {batch}"
            )
        positions = self._positions(position, batch, key_len, key.device, cache)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (batch, key_len):
                raise ValueError(
                    f"key_padding_mask must have shape {(batch, key_len)} (B, Tk), "
                    f"got {tuple(key_padding_mask.shape)}"
                )
            key_padding_mask = key_padding_mask.to(device=key.device, dtype=torch.bool)
        if self_attn_mask is not None:
            if self_attn_mask.shape != (query.shape[1], key_len):
                raise ValueError(
                    f"self_attn_mask must have shape {(query.shape[1], key_len)} (Tq, Tk), "
                    f"got {tuple(self_attn_mask.shape)}"
                )
            if cache is not None and cache.num_tokens > 0:
                raise ValueError("self_attn_mask cannot be used once the cache holds tokens")
        if need_weights:
            return self._attend(query, key, positions, key_padding_mask, self_attn_mask,
                                cache, need_weights=True, unmerged_tokens=unmerged_tokens,
                                layouts=layouts)
        return self._attend(query, key, positions, key_padding_mask, self_attn_mask, cache,
                            unmerged_tokens=unmerged_tokens, layouts=layouts)

    def _cache_placement(self, device, dtype):
        """(device, dtype) of a new cache: the given ones, else the module's."""
        param = next(self.parameters())
        return device or param.device, dtype or param.dtype

    def reorder_incremental_state(self, incremental_state: dict, new_order: torch.Tensor):
        """Beam-search reorder of the cache held in ``incremental_state`` (fairseq style)."""
        cache = incremental_state.get(self._state_key)
        if cache is not None:
            cache.reorder(new_order)
        return incremental_state

    # --- checks -----------------------------------------------------------------------
    def _check_inputs(self, query, key, value):
        for name, tensor in (("query", query), ("key", key)):
            if tensor.dim() != 3:
                raise ValueError(
                    f"{name} must have rank 3 (B, T, D), got shape {tuple(tensor.shape)}"
                )
            if tensor.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"{name} last dimension must be embed_dim={self.embed_dim}, "
                    f"got {tensor.shape[-1]}"
                )
        if value is not None and value.shape != key.shape:
            raise ValueError(
                f"value must have the shape of key {tuple(key.shape)} (self-attention), "
                f"got {tuple(value.shape)}"
            )
        if query.shape[0] != key.shape[0]:
            raise ValueError(
                f"query batch {query.shape[0]} does not match key batch {key.shape[0]}"
            )
        if query.shape[1] > key.shape[1]:
            raise ValueError(
                f"query length {query.shape[1]} exceeds key length {key.shape[1]}: "
                "queries are the last positions of key"
            )
        if query.dtype != key.dtype:
            raise ValueError(f"query dtype {query.dtype} does not match key dtype {key.dtype}")
        param_dtype = next(self.parameters()).dtype
        if query.dtype != param_dtype:
            raise ValueError(
                f"input dtype {query.dtype} does not match the module's parameter dtype "
                f"{param_dtype}; convert one of them (e.g. module.to({query.dtype}))"
            )

    @staticmethod
    def _positions(position, batch, key_len, device, cache) -> torch.Tensor:
        """Integer positions (B, Tk) of the key tokens."""
        if position is None:
            steps = torch.arange(key_len, device=device)
            if cache is None:
                return steps.unsqueeze(0).expand(batch, key_len)
            return cache.next_position.unsqueeze(1) + steps  # continue each row
        if position.dim() != 2 or position.shape[1] != key_len or position.shape[0] not in (
            1,
            batch,
        ):
            raise ValueError(
                f"position must have shape {(batch, key_len)} or {(1, key_len)} (B, Tk) "
                f"matching the key input, got {tuple(position.shape)}"
            )
        if position.is_floating_point():
            rounded = position.round()
            if not torch.equal(rounded, position):
                raise ValueError("position must hold integer values")
            position = rounded
        return position.to(device=device, dtype=torch.long).expand(batch, key_len)


def shared(layouts: Optional[dict], key: tuple, build):
    """``build()``, or what an earlier layer of the same stack call built under ``key``
    (``layouts`` None: built every call). The key names everything besides the call's
    positions, padding and lengths that the result depends on."""
    if layouts is None:
        return build()
    if key not in layouts:
        layouts[key] = build()
    return layouts[key]


def attention_mask_to_bias(visible: torch.Tensor, dtype, attn_bias=None) -> torch.Tensor:
    """Boolean visibility (B, 1, Tq, Tk) -> additive float mask, plus an optional (Tq, Tk) bias."""
    bias = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
    bias = bias.masked_fill(~visible, float("-inf"))
    if attn_bias is not None:
        bias = bias + attn_bias.to(dtype)
    return bias
