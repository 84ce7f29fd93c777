"""A Transformers ``Cache`` holding one temporally compressed latent cache per layer.

Each layer keeps an ``espnet2_mtla.attention.LatentCache``: ceil(T / down_rate) entries
of kv_lora_rank + qk_rope_head_dim numbers per row, written by the attention module
itself (``update`` of the key/value API is never used). ``get_seq_length`` counts time
steps, as generate() expects; ``nbytes()`` gives the bytes actually held.

``MTLACache(num_layers, share_prefix=True)`` (``generate(num_beams=K)``'s default with
K > 1) keeps the prompt's entries once per input row for its K beams (``attention.shared_prefix``): at
the first reorder after the prefill, each layer keeps one of the K identical rows of a
prompt as the shared part and the beams decode into their own entries; the same tokens
and scores, a cache of about 1/K over the prompt.

Decode steps in CUDA graphs: a cache that knows the most tokens it will hold
(``max_tokens``; generate() sets its ``max_length``) preallocates that capacity, and
its single-token steps on CUDA (no gradients) are replayed from one captured graph per
batch size (``espnet2_mtla.inference.cuda_graph.GraphedDecodeStep``: static caches,
updates in place, the fused merge and the Triton decode kernel). The first step at a
batch size runs eagerly and captures; anything else (a prompt, several tokens, a crop,
attentions asked for) leaves static mode and runs eagerly, as without graphs.
``cuda_graphs``: None graphs such steps on CUDA, False never, True also runs the
static path off CUDA (eagerly: how the CPU tests check it)."""

from typing import Optional

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from espnet2_mtla.attention.cache import grown
from espnet2_mtla.attention.shared_prefix import SharedPrefixLatentCache
from espnet2_mtla.inference.cuda_graph import GraphedDecodeStep


class LatentCacheLayer(CacheLayerMixin):
    is_compileable = False
    is_croppable = True  # through MTLACache.crop, which re-feeds a cut chunk
    supports_early_init = False

    def __init__(self):
        super().__init__()
        self.latent = None  # LatentCache, created by the model on the first forward
        self.steps_before = 0  # steps not counted by latent.num_tokens (a shared prompt's)

    def share_prefix(self, group_size: int, max_tokens: Optional[int] = None):
        """From here on, the K = group_size identical rows of each prompt (generate()
        expanded them for beam search) share its entries; the beams decode into their own
        (room for ``max_tokens`` steps in all, where known)."""
        if self.latent is None or isinstance(self.latent, SharedPrefixLatentCache):
            return
        steps = self.latent.num_tokens
        rows = torch.arange(0, self.latent.batch_size, group_size,
                            device=self.latent.entries.device)
        self.latent.reorder(rows)  # (G rows: one per prompt)
        to_come = max(0, max_tokens - steps) if max_tokens is not None else 0
        self.latent = SharedPrefixLatentCache(self.latent, group_size, capacity=to_come)
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

    def __init__(self, num_layers: int, share_prefix: bool = False,
                 max_tokens: Optional[int] = None, cuda_graphs: Optional[bool] = None):
        """share_prefix: in beam search, keep each prompt's entries once for its beams;
        max_tokens: the most steps it will hold (preallocated; needed for graphs);
        cuda_graphs: None graph single-token steps on CUDA, False never, True wherever
        (off CUDA the static path runs eagerly)."""
        super().__init__(layers=[LatentCacheLayer() for _ in range(num_layers)])
        self.share_prefix = share_prefix
        self.group_size = 1  # beams per prompt: generate() sets it (num_beams)
        self.max_tokens = max_tokens
        self.cuda_graphs = cuda_graphs
        self.graphed_step = None  # GraphedDecodeStep while the layers are in static mode
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

    def graphs_apply(self, input_ids: torch.Tensor) -> bool:
        """Whether a forward of these ids (B, 1) runs on the graphed step: one token per
        row, on CUDA (or cuda_graphs=True), the prompt already cached, room for the step
        in ``max_tokens``, nothing waiting to be re-fed. The caller also checks that no
        gradients, attentions or hidden states are asked for and the token is real."""
        if self.cuda_graphs is False or self.max_tokens is None or self.refeed is not None:
            return False
        if input_ids.shape[1] != 1 or (self.cuda_graphs is None and not input_ids.is_cuda):
            return False
        latents = [layer.latent for layer in self.layers]
        return (all(latent is not None for latent in latents)
                and latents[0].batch_size == input_ids.shape[0]
                and self.get_seq_length() + 1 <= self.max_tokens)

    def graphed_logits(self, model, input_ids, position_ids) -> torch.Tensor:
        """Logits (B, V) of ``model`` (a LlamaMTLAForCausalLM) for one token per row,
        replayed from the captured step (captured first, after an eager warm-up, at a
        new batch size). position_ids (B, 1) or None (each row's next position)."""
        latents = [layer.latent for layer in self.layers]
        step = self.graphed_step
        if step is not None and (any(a is not b for a, b in zip(step.caches, latents))
                                 or not all(latent.has_room(1) for latent in latents)):
            self.leave_graphs()  # (other latents, or max_tokens raised since the capture)
        if self.graphed_step is None:
            for layer in self.layers:  # (room for every step to come: static mode cannot grow)
                layer.latent.reserve(self.max_tokens - layer.steps_before)
            self.graphed_step = GraphedDecodeStep(LogitsStep(model), latents)
        step = self.graphed_step
        step.model.set_positions(position_ids, latents[0])
        self.record(input_ids)
        return step(None, input_ids[:, 0]).clone()  # (the graph's buffer is overwritten)

    def leave_graphs(self):
        """Back to eager steps (static mode off; the entries stay as they are)."""
        if self.graphed_step is not None:
            self.graphed_step.close()
            self.graphed_step = None

    def reset(self):
        self.leave_graphs()
        super().reset()

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
        self.leave_graphs()
        self.cuda_graphs = False  # (assisted decoding crops every round: no captures)
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
        # (in static mode a reorder that keeps the batch size moves rows in place)
        if len(beam_idx) != self.batch_size:
            self.leave_graphs()
        if self.share_prefix and self.group_size > 1:  # (the first reorder: after the prefill)
            if not all(isinstance(layer.latent, SharedPrefixLatentCache) for layer in self.layers):
                self.leave_graphs()
            for layer in self.layers:
                layer.share_prefix(self.group_size, self.max_tokens)
        super().reorder_cache(beam_idx)
        self._reorder_ids(beam_idx)

    def batch_select_indices(self, indices: torch.Tensor):
        self.leave_graphs()
        super().batch_select_indices(indices)
        self._reorder_ids(indices)

    def batch_repeat_interleave(self, repeats: int):
        self.leave_graphs()
        super().batch_repeat_interleave(repeats)
        if self.fed_ids is not None or self.refeed is not None:
            batch = (self.fed_ids if self.fed_ids is not None else self.refeed).shape[0]
            rows = torch.arange(batch).repeat_interleave(repeats)
            self._reorder_ids(rows)


class LogitsStep:
    """``decode_step(tokens, latents)``: one token per row through a LlamaMTLAForCausalLM's
    layers on their latent caches, logits (B, V) out; the step that ``GraphedDecodeStep``
    captures. Positions come from a buffer of its own (the graph's input), set before
    each call from position_ids or, where none are given, each row's next position."""

    def __init__(self, model):
        self.model = model
        self.positions = None  # (B, 1) long: one buffer per batch size (one graph each)

    def set_positions(self, position_ids, latent):
        """Fill the buffer (a new one at a new batch size, where the graph is recaptured)."""
        source = latent.next_position[:, None] if position_ids is None else position_ids[:, -1:]
        if self.positions is None or self.positions.shape != source.shape:
            self.positions = torch.empty_like(source, dtype=torch.long)
        self.positions.copy_(source)

    def decode_step(self, tokens, latents):
        body = self.model.model
        hidden = body.embed_tokens(tokens[:, None])  # (B, 1, D)
        for layer, latent in zip(body.layers, latents):
            hidden = layer(hidden, self.positions, None, past_key_values=latent)
        return self.model.lm_head(body.norm(hidden))[:, 0]  # (B, V)
