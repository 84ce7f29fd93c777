"""Beam search that keeps each utterance's prefix once (latent caches: MLA, MTLA).

The K beams of an utterance share what the prefill stored (the prefix and the prompt),
yet a plain beam search copies it into every beam and reorders it every step. Here the
prefill's whole chunks stay in one ``LatentCache`` of G utterance rows (``shared``),
never reordered; each beam's own cache (G * K rows) holds the rest: the chunk that
straddles the end of the prefill (it merges tokens the beams choose, so it is the
beam's, copied to each) and everything decoded. A decode step attends to both parts in
one softmax, exactly as to the unshared cache.

``SharedPrefixLatentCache`` is the beam's own ``LatentCache`` (add_step, reorder within
the groups, static mode and CUDA graphs unchanged) plus the ``shared`` part and the group
size K; a reorder that drops groups (the batch shrinks) selects their shared rows too.
"""

import torch

from espnet2_mtla.attention.cache import LatentCache
from espnet2_mtla.kernels import latent_shared_decode_kernel


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
        if len(batch_index) != self.batch_size:
            groups = torch.div(batch_index.view(-1, self.group_size)[:, 0], self.group_size,
                               rounding_mode="floor")
            self.shared.reorder(groups)
        super().reorder(batch_index)

    def nbytes_bound(self) -> int:
        return super().nbytes_bound() + self.shared.nbytes_bound()

    def nbytes(self) -> int:
        return super().nbytes() + self.shared.nbytes()



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
