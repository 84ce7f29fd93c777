"""A Transformers ``Cache`` holding one temporally compressed latent cache per layer.

Each layer keeps an ``espnet2_mtla.attention.LatentCache``: ceil(T / down_rate) entries
of kv_lora_rank + qk_rope_head_dim numbers per row, written by the attention module
itself (``update`` of the key/value API is never used). ``get_seq_length`` counts time
steps, as generate() expects; ``nbytes()`` gives the bytes actually held."""

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


class LatentCacheLayer(CacheLayerMixin):
    is_compileable = False
    is_croppable = False
    supports_early_init = False

    def __init__(self):
        super().__init__()
        self.latent = None  # LatentCache, created by the model on the first forward

    def lazy_initialization(self, key_states, value_states):
        raise NotImplementedError("MTLA layers create their latent cache themselves")

    def update(self, key_states, value_states, *args, **kwargs):
        raise NotImplementedError("MTLA layers write their latent cache themselves")

    def get_seq_length(self) -> int:
        return 0 if self.latent is None else self.latent.num_tokens

    def get_mask_sizes(self, query_length: int):
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return -1

    def reset(self):
        self.latent = None

    def crop(self, max_length: int):
        raise NotImplementedError(
            "MTLACache cannot be cropped: it keeps merged chunks of down_rate tokens, not "
            "the tokens, so assisted and prompt-lookup decoding (which crop the cache to "
            "drop rejected candidate tokens) are not supported with LlamaMTLA models; use "
            "greedy, sampling or beam search")

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
    """The compressed cache of a ``LlamaMTLAForCausalLM`` (one layer per decoder layer)."""

    def __init__(self, num_layers: int):
        super().__init__(layers=[LatentCacheLayer() for _ in range(num_layers)])

    @property
    def batch_size(self) -> int:
        return self.layers[0].batch_size

    def nbytes(self) -> int:
        """Bytes of the latent entries held, all layers (exact; syncs the device)."""
        return sum(layer.latent.nbytes() for layer in self.layers if layer.latent is not None)
