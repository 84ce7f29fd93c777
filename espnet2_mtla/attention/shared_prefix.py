"""Beam search that keeps each utterance's prefix once (every cache: MHA/MQA/GQA, MLA, MTLA).

The K beams of an utterance share what the prefill stored (the prefix and the prompt),
yet a plain beam search copies it into every beam and reorders it every step. Here the
prefill stays in one cache of G utterance rows (``shared``), never reordered; each
beam's own cache (G * K rows) holds the rest: everything decoded and, for MTLA, the
chunk that straddles the end of the prefill (it merges tokens the beams choose, so it is
the beam's, copied to each). A decode step attends to both parts in one softmax, exactly
as to the unshared cache.

``SharedPrefixLatentCache`` / ``SharedPrefixKVCache`` are the beams' own ``LatentCache``
/ ``KVCache`` (single steps, reorder within the groups, static mode and CUDA graphs
unchanged) plus the ``shared`` part and the group size K; a reorder that drops groups
(the batch shrinks) selects their shared rows too. ``shared_prefix_cache`` makes the one that
fits a prefilled cache.
"""

import torch

from espnet2_mtla.attention.cache import KVCache, LatentCache
from espnet2_mtla.kernels import latent_shared_decode_kernel


def supports_shared_prefix(cache) -> bool:
    """Whether ``shared_prefix_cache`` takes this layer's cache."""
    return isinstance(cache, (KVCache, LatentCache))


def shared_prefix_cache(cache, group_size: int, capacity: int):
    """The prefilled ``cache`` (G utterance rows, taken over) as the shared part of a
    cache for G * group_size beams that will decode up to ``capacity`` more tokens."""
    if isinstance(cache, LatentCache):
        return SharedPrefixLatentCache(cache, group_size, capacity)
    if isinstance(cache, KVCache):
        return SharedPrefixKVCache(cache, group_size, capacity)
    raise TypeError(f"shared_prefix_cache: no shared-prefix form of {type(cache).__name__}")


def _shared_rows_follow(cache, batch_index: torch.Tensor):
    """When a reorder drops groups (the batch shrinks), keep their utterances' shared rows:
    the K rows of a kept group all come from one group (beam back-pointers)."""
    if len(batch_index) != cache.batch_size:
        groups = torch.div(batch_index.view(-1, cache.group_size)[:, 0], cache.group_size,
                           rounding_mode="floor")
        cache.shared.reorder(groups)


class SharedPrefixLatentCache(LatentCache):
    """The beams' own entries (G * K rows, this cache) after ``shared`` (G rows)."""

    def __init__(self, shared: LatentCache, group_size: int, capacity: int):
        """shared: the prefilled cache of G utterance rows (taken over, and trimmed to its
        whole chunks); group_size: K beams per utterance; capacity: tokens to come."""
        groups = shared.batch_size
        super().__init__(groups * group_size, shared.kv_lora_rank,
                         shared.entries.shape[-1] - shared.kv_lora_rank, shared.down_rate,
                         shared.entries.device, shared.entries.dtype,
                         capacity + shared.down_rate)
        self.group_size = group_size
        rows = torch.arange(groups, device=shared.entries.device)
        # the newest entry is the beam's if its chunk is unfinished (the next token joins it)
        open_chunk = (shared.num_entries > 0) & (shared.next_position % shared.down_rate != 0)
        last = (shared.num_entries - 1).clamp(min=0)
        beams = rows.repeat_interleave(group_size)  # (G * K,) the utterance of each row
        self.entries[:, 0] = shared.entries[beams, last[beams]]
        self.num_entries = open_chunk.long()[beams]
        shared.num_entries = shared.num_entries - open_chunk.long()
        # (a row whose shared part is empty starts its own chunks where the prefill did)
        self.first_chunk = torch.where(shared.num_entries > 0,
                                       shared.first_chunk + shared.num_entries,
                                       shared.first_chunk)[beams]
        self.next_position = shared.next_position[beams].clone()
        self.num_tokens = shared.down_rate - 1 if bool(open_chunk.any()) else 0
        # no spare capacity: the entries it may hold and the dummy slot (LatentCache.write)
        shared.entries = shared.entries[:, : shared.max_entries + 1].clone()
        self.shared = shared

    def reorder(self, batch_index: torch.Tensor):
        """Keep rows ``batch_index`` (beam back-pointers: the K rows of a kept group come
        from one group); the shared rows follow the groups when the batch shrinks."""
        _shared_rows_follow(self, batch_index)
        super().reorder(batch_index)

    def nbytes_bound(self) -> int:
        return super().nbytes_bound() + self.shared.nbytes_bound()

    def nbytes(self) -> int:
        return super().nbytes() + self.shared.nbytes()


class SharedPrefixKVCache(KVCache):
    """The beams' own keys and values (G * K rows, this cache: the decoded tokens) after
    ``shared`` (G rows: the prefill's keys, values and padding)."""

    def __init__(self, shared: KVCache, group_size: int, capacity: int):
        """shared: the prefilled cache of G utterance rows (taken over, trimmed to the
        steps it holds); group_size: K beams per utterance; capacity: tokens to come."""
        groups, _, num_kv_heads, head_dim = shared.keys.shape
        super().__init__(groups * group_size, num_kv_heads, head_dim, shared.keys.device,
                         shared.keys.dtype, capacity)
        self.group_size = group_size
        self.next_position = shared.next_position.repeat_interleave(group_size)
        held = shared.num_tokens
        shared.keys = shared.keys[:, :held].clone()
        shared.values = shared.values[:, :held].clone()
        shared.padding = shared.padding[:, :held].clone()  # read where has_padding
        self.shared = shared

    def reorder(self, batch_index: torch.Tensor):
        """Keep rows ``batch_index`` (beam back-pointers within the groups); the shared rows
        follow the groups when the batch shrinks."""
        _shared_rows_follow(self, batch_index)
        super().reorder(batch_index)

    def nbytes(self) -> int:  # (exact on the host: also the bound)
        return super().nbytes() + self.shared.nbytes()


def shared_prefix_kv_attention(q, keys, values, padding, cache: SharedPrefixKVCache,
                               scale: float):
    """(B, 1, H * d_h): one softmax over the utterance's shared keys and the row's own.

    q (B, 1, H, d_h) after RoPE, B = G * K rows in groups of K; keys/values (B, To, n_kv,
    d_h) and padding (B, To) or None: the row's own steps (as ``KVCache.append`` returned
    them). Query head h reads key/value head h // (H / n_kv), as SDPA's enable_gqa."""
    shared = cache.shared
    batch, _, heads, head_dim = q.shape
    groups, num_kv = shared.keys.shape[0], shared.keys.shape[2]
    q = q.view(batch, num_kv, heads // num_kv, head_dim)  # (B, n_kv, H / n_kv, d_h)
    q_groups = q.view(groups, cache.group_size, *q.shape[1:])
    shared_scores = torch.einsum("gkjqd,gnjd->gkjqn", q_groups, shared.keys)
    shared_scores = shared_scores.flatten(0, 1)  # (B, n_kv, H / n_kv, Ts)
    if shared.has_padding:
        shared_pad = shared.padding.repeat_interleave(cache.group_size, dim=0)  # (B, Ts)
        shared_scores = shared_scores.masked_fill(shared_pad[:, None, None], float("-inf"))
    own_scores = torch.einsum("bjqd,bnjd->bjqn", q, keys)  # (B, n_kv, H / n_kv, To)
    if padding is not None:
        own_scores = own_scores.masked_fill(padding[:, None, None], float("-inf"))
    probs = (torch.cat([shared_scores, own_scores], dim=-1) * scale).softmax(dim=-1)
    shared_probs, own_probs = probs.split([shared_scores.shape[-1], keys.shape[1]], dim=-1)
    out = torch.einsum("gkjqn,gnjd->gkjqd",
                       shared_probs.view(groups, cache.group_size, *shared_probs.shape[1:]),
                       shared.values).flatten(0, 1)
    out = out + torch.einsum("bjqn,bnjd->bjqd", own_probs, values)  # (B, n_kv, H / n_kv, d_h)
    return out.reshape(batch, 1, heads * head_dim)


def shared_prefix_attention(q_full, cache: SharedPrefixLatentCache, scale: float):
    """(B, H, 1, r): one softmax over the utterance's shared entries and the row's own,
    times their latents. q_full (B, H, 1, r + d_r), B = G * K rows in groups of K.
    On CUDA the Triton kernel (kernels/latent_decode.py) reads the shared entries once
    per group; this PyTorch path is its oracle."""
    rank = cache.kv_lora_rank
    kernel = latent_shared_decode_kernel(q_full[:, :, 0], rank, cache.group_size)
    if kernel is not None:
        return kernel(q_full[:, :, 0], cache.entries, cache.num_entries, cache.read_entries,
                      cache.shared.entries, cache.shared.num_entries, cache.shared.max_entries,
                      cache.group_size, rank, scale)[:, :, None]
    shared, shared_valid = cache.shared.held()  # (G, Ns, r + d_r), (G, Ns)
    own, own_valid = cache.held()  # (B, No, r + d_r), (B, No)
    groups, heads, width = shared.shape[0], q_full.shape[1], q_full.shape[-1]
    q = q_full[:, :, 0].reshape(groups, cache.group_size, heads, width)
    shared_scores = torch.einsum("gkhw,gnw->gkhn", q, shared).flatten(0, 1)  # (B, H, Ns)
    own_scores = torch.einsum("bhw,bnw->bhn", q_full[:, :, 0], own)  # (B, H, No)
    shared_valid = shared_valid.repeat_interleave(cache.group_size, dim=0)  # (B, Ns)
    scores = torch.cat([shared_scores.masked_fill(~shared_valid[:, None], float("-inf")),
                        own_scores.masked_fill(~own_valid[:, None], float("-inf"))], dim=-1)
    probs = (scores * scale).softmax(dim=-1)  # (B, H, Ns + No)
    shared_probs, own_probs = probs.split([shared.shape[1], own.shape[1]], dim=-1)
    out = torch.einsum("gkhn,gnr->gkhr",
                       shared_probs.reshape(groups, cache.group_size, heads, -1),
                       shared[..., :rank]).flatten(0, 1)
    out = out + torch.einsum("bhn,bnr->bhr", own_probs, own[..., :rank])
    return out[:, :, None]  # (B, H, 1, r)
