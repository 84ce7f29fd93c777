"""Baselines behind our attention-layer interface: the paper-style (fairseq) MHA, whose
cache grows by concatenation and is reordered by ``index_select``, and the reference
``mtla`` package's MTLA with its own concatenated cache."""

import torch
from torch import nn

from espnet2_mtla.attention.cache import DecodingCache
from espnet2_mtla.attention.mha import MultiHeadAttention


class PaperStyleMHA(nn.Module):
    """fairseq-style incremental MHA: the cache grows by torch.cat every step and is
    reordered by index_select; attention is bmm + softmax. Weights of a MultiHeadAttention."""

    def __init__(self, ours: MultiHeadAttention):
        super().__init__()
        self.ours = ours

    def make_cache(self, batch_size, device=None, dtype=None, capacity=0, unmerged_tokens=0):
        return PaperStyleCache(batch_size, device)

    def forward(self, query, key=None, position=None, key_padding_mask=None, cache=None,
                unmerged_tokens=0, layouts=None):  # (no prefix merged, nothing shared: ignored)
        from espnet2_mtla.attention.rotary import apply_rotary, rotary_angles

        ours = self.ours
        key = query if key is None else key
        batch, query_len, _ = query.shape
        key_len = key.shape[1]
        if position is None:
            position = cache.next_position[:, None] + torch.arange(key_len, device=key.device)
        angles = rotary_angles(position, ours.head_dim)
        q = apply_rotary(ours.q_proj(query).view(batch, query_len, ours.num_heads, -1),
                         angles[:, key_len - query_len :])
        k = apply_rotary(ours.k_proj(key).view(batch, key_len, ours.num_kv_heads, -1), angles)
        v = ours.v_proj(key).view(batch, key_len, ours.num_kv_heads, -1)
        if cache is not None:
            k, v = cache.append(k, v)
            cache.next_position = position[:, -1] + 1
        group = ours.num_heads // ours.num_kv_heads
        k = k.repeat_interleave(group, dim=2).transpose(1, 2)  # (B, H, T, d_h)
        v = v.repeat_interleave(group, dim=2).transpose(1, 2)
        scores = torch.matmul(q.transpose(1, 2), k.transpose(-1, -2)) * ours.head_dim**-0.5
        total = k.shape[2]
        causal = torch.ones(query_len, total, dtype=torch.bool, device=query.device).tril(
            total - query_len
        )
        probs = scores.masked_fill(~causal, float("-inf")).float().softmax(-1).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).flatten(2)
        return ours.out_proj(out)


class PaperStyleCache(DecodingCache):
    def __init__(self, batch_size, device):
        self.keys = self.values = None
        self.batch_size = batch_size
        self.next_position = torch.zeros(batch_size, dtype=torch.long, device=device)

    def append(self, k, v):
        self.keys = k if self.keys is None else torch.cat([self.keys, k], dim=1)
        self.values = v if self.values is None else torch.cat([self.values, v], dim=1)
        return self.keys, self.values

    def reorder(self, batch_index):
        self.keys = self.keys.index_select(0, batch_index)
        self.values = self.values.index_select(0, batch_index)
        self.next_position = self.next_position.index_select(0, batch_index)
        self.batch_size = len(batch_index)

    def nbytes(self):
        return 0 if self.keys is None else 2 * self.keys.numel() * self.keys.element_size()



class ReferenceMTLA(nn.Module):
    """The reference package's MTLA behind our layer interface (its own cat-grown cache)."""

    def __init__(self, embed_dim, num_heads, **conf):
        super().__init__()
        from mtla.MTLA import MultiheadTemporalLatentAttention as Reference

        self.reference = Reference(embed_dim, num_heads, **conf)

    def make_cache(self, batch_size, device=None, dtype=None, capacity=0, unmerged_tokens=0):
        return ReferenceCache(self.reference, batch_size, device)

    def forward(self, query, key=None, position=None, key_padding_mask=None, cache=None,
                unmerged_tokens=0, layouts=None):  # (no prefix merged, nothing shared: ignored)
        key = query if key is None else key
        if position is None:
            position = cache.next_position[:, None] + torch.arange(key.shape[1], device=key.device)
        cache.next_position = position[:, -1] + 1
        return self.reference(query, key, key, position=position.float(),
                              incremental_state=cache.state)


class ReferenceCache(DecodingCache):
    def __init__(self, reference, batch_size, device):
        self.reference, self.state, self.batch_size = reference, {}, batch_size
        self.next_position = torch.zeros(batch_size, dtype=torch.long, device=device)

    def reorder(self, batch_index):
        self.reference.reorder_incremental_state(self.state, batch_index)
        self.next_position = self.next_position.index_select(0, batch_index)
        self.batch_size = len(batch_index)

    def nbytes(self):
        return sum(t.numel() * t.element_size() for buffer in self.state.values()
                   for name, t in buffer.items() if name.startswith("prev"))

