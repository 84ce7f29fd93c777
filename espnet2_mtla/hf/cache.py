"""A Transformers ``Cache`` holding one temporally compressed latent cache per layer.

Each layer keeps an ``espnet2_mtla.attention.LatentCache``: ceil(T / down_rate) entries
of kv_lora_rank + qk_rope_head_dim numbers per row, written by the attention module
itself (``update`` of the key/value API is never used). ``get_seq_length`` counts time
steps, as generate() expects; ``nbytes()`` gives the bytes actually held.

``MTLACache(num_layers, share_prefix=True)`` (``generate(num_beams=K)``'s default with
K > 1) keeps the prompt's entries once per input row for its K beams (``attention.shared_prefix``): at
the first reorder after the prefill, each layer keeps one of the K identical rows of a
prompt as the shared part and the beams decode into their own entries; the same tokens
and scores, a cache of about 1/K over the prompt."""

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from espnet2_mtla.attention.cache import grown
from espnet2_mtla.attention.shared_prefix import SharedPrefixLatentCache


class LatentCacheLayer(CacheLayerMixin):
    is_compileable = False
    is_croppable = True  # through MTLACache.crop, which re-feeds a cut chunk
    supports_early_init = False

    def __init__(self):
        super().__init__()
        self.latent = None  # LatentCache, created by the model on the first forward
        self.steps_before = 0  # steps not counted by latent.num_tokens (a shared prompt's)

    def share_prefix(self, group_size: int):
        """From here on, the K = group_size identical rows of each prompt (generate()
        expanded them for beam search) share its entries; the beams decode into their own."""
        if self.latent is None or isinstance(self.latent, SharedPrefixLatentCache):
            return
        steps = self.latent.num_tokens
        rows = torch.arange(0, self.latent.batch_size, group_size,
                            device=self.latent.entries.device)
        self.latent.reorder(rows)  # (G rows: one per prompt)
        self.latent = SharedPrefixLatentCache(self.latent, group_size, capacity=0)
        self.steps_before = steps - self.latent.num_tokens

    def lazy_initialization(self, key_states, value_states):
        raise NotImplementedError("MTLA layers create their latent cache themselves")

    def update(self, key_states, value_states, *args, **kwargs):
        raise NotImplementedError("MTLA layers write their latent cache themselves")

    def get_seq_length(self) -> int:
        return 0 if self.latent is None else self.steps_before + self.latent.num_tokens

    def get_mask_sizes(self, query_length: int):
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return -1

    def reset(self):
        self.latent = None
        self.steps_before = 0

    def reorder_cache(self, beam_idx: torch.LongTensor):
        if self.latent is not None:
            self.latent.reorder(beam_idx.to(self.latent.entries.device))

    def batch_repeat_interleave(self, repeats: int):
        if self.latent is not None:
            rows = torch.arange(self.latent.batch_size, device=self.latent.entries.device)
            self.latent.reorder(rows.repeat_interleave(repeats))

    def batch_select_indices(self, indices: torch.Tensor):
        self.reorder_cache(indices)

    def offload(self):
        pass

    def prefetch(self):
        pass

    @property
    def batch_size(self) -> int:
        return -1 if self.latent is None else self.latent.batch_size


class MTLACache(Cache):
    """The compressed cache of a ``LlamaMTLAForCausalLM`` (one layer per decoder layer).

    It also keeps the ids of every token fed (8 bytes a token, reordered with the rows),
    so that ``crop`` (assisted and prompt-lookup decoding drop rejected drafts) can cut
    inside a merged chunk: the chunk is dropped from every layer and its tokens that stay
    are fed again before the next tokens (``take_refeed``), which recomputes it exactly.
    ``get_seq_length`` counts those tokens as cached, as the caller expects."""

    def __init__(self, num_layers: int, share_prefix: bool = False):
        """share_prefix: in beam search, keep each prompt's entries once for its beams."""
        super().__init__(layers=[LatentCacheLayer() for _ in range(num_layers)])
        self.share_prefix = share_prefix
        self.group_size = 1  # beams per prompt: generate() sets it (num_beams)
        self.fed_ids = None  # (B, capacity) int64: the ids fed so far (num_fed of them)
        self.num_fed = 0
        self.ids_known = True  # False once inputs_embeds were fed (nothing to re-feed then)
        self.refeed = None  # (B, p) ids a crop left to feed again, or None

    @property
    def batch_size(self) -> int:
        return self.layers[0].batch_size

    def nbytes(self) -> int:
        """Bytes of the latent entries held, all layers (exact; syncs the device)."""
        return sum(layer.latent.nbytes() for layer in self.layers if layer.latent is not None)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        pending = 0 if self.refeed is None else self.refeed.shape[1]
        return self.layers[layer_idx].get_seq_length() + pending

    def record(self, input_ids):
        """Note the ids of a forward's tokens (None: embeddings were fed)."""
        if input_ids is None:
            self.ids_known = False
            return
        count = input_ids.shape[1]
        if self.fed_ids is None:
            self.fed_ids = input_ids.new_zeros(input_ids.shape[0], 0)
        self.fed_ids = grown(self.fed_ids, self.num_fed + count)  # doubling, ids kept
        self.fed_ids[:, self.num_fed:self.num_fed + count] = input_ids
        self.num_fed += count

    def take_refeed(self):
        """The ids (B, p) to feed before the next tokens, or None; forgotten once taken."""
        refeed, self.refeed = self.refeed, None
        return refeed

    def crop(self, tokens_to_remove: int):
        """Drop the newest ``-tokens_to_remove`` steps (Transformers' convention; a
        positive value is the older one: the number of steps to keep)."""
        length = self.get_seq_length()
        keep = length + tokens_to_remove if tokens_to_remove <= 0 else min(tokens_to_remove,
                                                                            length)
        if keep == length:
            return
        if any(isinstance(layer.latent, SharedPrefixLatentCache) for layer in self.layers):
            raise NotImplementedError("crop: a cache whose prompt is shared by beams "
                                      "(share_prefix) cannot be cropped")
        held = self.layers[0].get_seq_length()  # steps the layers hold (all layers alike)
        if keep >= held:  # only tokens still waiting to be re-fed go
            self.refeed = self.refeed[:, :keep - held] if keep > held else None
            return
        self.refeed = None
        counts = {layer.latent.crop(keep) for layer in self.layers if layer.latent is not None}
        count = counts.pop() if counts else 0
        if count and not self.ids_known:
            raise NotImplementedError(
                f"crop to {keep} tokens cuts a merged chunk of down_rate tokens, which is "
                "recomputed from the token ids, but this cache was fed inputs_embeds; use "
                "input_ids (or a crop at a multiple of down_rate)")
        self.num_fed = keep - count
        if count:
            self.refeed = self.fed_ids[:, self.num_fed:keep].clone()

    def _reorder_ids(self, rows: torch.Tensor):
        if self.fed_ids is not None:
            self.fed_ids = self.fed_ids[rows.to(self.fed_ids.device)]
        if self.refeed is not None:
            self.refeed = self.refeed[rows.to(self.refeed.device)]

    def reorder_cache(self, beam_idx: torch.LongTensor):
        if self.share_prefix and self.group_size > 1:  # (the first reorder: after the prefill)
            for layer in self.layers:
                layer.share_prefix(self.group_size)
        super().reorder_cache(beam_idx)
        self._reorder_ids(beam_idx)

    def batch_select_indices(self, indices: torch.Tensor):
        super().batch_select_indices(indices)
        self._reorder_ids(indices)

    def batch_repeat_interleave(self, repeats: int):
        super().batch_repeat_interleave(repeats)
        if self.fed_ids is not None or self.refeed is not None:
            batch = (self.fed_ids if self.fed_ids is not None else self.refeed).shape[0]
            rows = torch.arange(batch).repeat_interleave(repeats)
            self._reorder_ids(rows)
