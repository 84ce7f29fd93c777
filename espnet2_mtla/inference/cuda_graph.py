"""One beam-search step (cache reorder + decoder step) replayed from a CUDA graph.

A decoding step of the paper-sized model is hundreds of small kernel launches; with a
batch of a few hundred hypotheses the GPU finishes them faster than Python issues them,
so the step is bound by the host, not by the cache reads that MTLA shrinks. Capturing
the step once and replaying it removes that overhead (measured: MTLA s=2 beam search
3.2x faster on an H100, README).

The caches are put in static mode (``espnet2_mtla.attention.cache``): fixed shapes, in
place updates, reads over the whole preallocated capacity, and reorders that move rows
in place through one spare buffer per name, shared by all layers (memory: one layer's
cache more, not twice the cache). Every buffer keeps its storage, so one graph serves
every step at a batch size. The first step at a batch size runs eagerly (it compiles and
warms every kernel at exactly these shapes), then the graph is captured and later steps
replay it. A smaller batch needs a new capture. The graph writes its log-probs into an
output buffer made outside its memory pool, which holds the step's temporaries.
(Until 2026-12 the reorder swapped buffer and spare, which put the buffers somewhere
else after every step: a cycle of L + 1 graphs to capture, 0.25 s per batch size for
the paper-sized model on an H200.)
"""

import time
from typing import List, Optional

import torch

from espnet2_mtla.attention.cache import DecodingCache, spare_of


def supports_cuda_graphs(caches: List[DecodingCache]) -> bool:
    """Whether every cache can be used in static mode on a CUDA device."""
    return bool(caches) and all(
        cache.supports_static and _device_of(cache).type == "cuda" for cache in caches
    )


def prefers_cuda_graphs(caches: List[DecodingCache]) -> bool:
    """Whether graphs are the default: every cache supports them and gains from them
    (latent caches; per-token KV caches read their whole capacity in static mode)."""
    return supports_cuda_graphs(caches) and all(cache.prefers_cuda_graphs for cache in caches)


def _device_of(cache) -> torch.device:
    return cache.next_position.device


class DecodeStep:
    """``step(source, tokens)``: reorder the caches by ``source`` (beam back-pointers;
    None: no reorder, the caller reorders or never does), feed ``tokens`` (B,), return
    ``model.decode_step``'s scores (B, V). Eager: every call runs the ops."""

    def __init__(self, model, caches: List):
        self.model = model
        self.caches = caches

    def __call__(self, source: Optional[torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        if source is not None:
            for cache in self.caches:
                cache.reorder(source)
        return self.model.decode_step(tokens, self.caches)


class GraphedDecodeStep(DecodeStep):
    """The same step, captured in a CUDA graph for the current batch size.

    The returned log-probs live in the graph's output buffer: they are overwritten by
    the next call. A call with another batch size (rows leaving the beam search)
    reorders eagerly, drops the graph and captures again. Off CUDA nothing is captured:
    every step runs eagerly on the static caches (how the CPU tests check static mode).
    """

    def __init__(self, model, caches: List):
        super().__init__(model, caches)
        self.spares = {}  # shared by every layer's cache
        for cache in caches:
            cache.set_static(True, self.spares)
        self.graph = None  # the step at the current batch size
        self.source = self.tokens = None  # the graph's inputs (source None: no reorder)
        self.log_probs = None  # (B, V): what the graph writes
        self.batch_size = caches[0].batch_size
        self.capturable = _device_of(caches[0]).type == "cuda"
        self.replays = 0
        self.captures = 0  # graphs captured (one per batch size met)
        self.capture_seconds = 0.0  # host time spent capturing them

    def __call__(self, source: Optional[torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        # rows left (a new shape) or the reorder moved in or out of the step: a new graph
        reorder_changed = self.graph is not None and (source is None) != (self.source is None)
        if len(tokens) != self.batch_size or reorder_changed:
            self.graph = None
            self.spares.clear()
            self.batch_size = len(tokens)
        if self.graph is None:
            log_probs = super().__call__(source, tokens)  # warm-up at these shapes
            # (no capture when the caches are full: no later step can come)
            if self.capturable and all(cache.has_room(1) for cache in self.caches):
                self._capture(source, tokens, log_probs)
            return log_probs
        if self.source is not None:
            self.source.copy_(source)
        self.tokens.copy_(tokens)
        self.graph.replay()
        self.replays += 1
        for cache in self.caches:  # the host side of what the graph did
            cache.num_tokens += 1
        return self.log_probs

    def _capture(self, source, tokens, warm_log_probs):
        """Capture the step at this batch size (``warm_log_probs``: the eager step's
        output, for the shape of the graph's output buffer)."""
        torch.cuda.synchronize()  # (the time of the capture alone)
        start = time.perf_counter()
        self.source = None if source is None else source.clone()
        self.tokens = torch.zeros_like(tokens)
        host_counts = [cache.num_tokens for cache in self.caches]
        self.graph = self.log_probs = None  # free the old graph's memory first
        self.log_probs = torch.empty_like(warm_log_probs)  # outside the graph's pool
        for cache in self.caches if source is not None else []:
            for name in cache.large_buffers:  # (none yet after a batch change)
                spare_of(cache, name)  # made outside the graph's pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # recorded, not run
            self.log_probs.copy_(super().__call__(self.source, self.tokens))
        # the capture ran the host side of a step that did not happen: without this, a
        # capture late in the search (the batch shrank near the end) counted a step more
        # and a static cache with room for fewer refused it
        for cache, count in zip(self.caches, host_counts):
            cache.num_tokens = count
        self.graph = graph
        torch.cuda.synchronize()
        self.captures += 1
        self.capture_seconds += time.perf_counter() - start

    def close(self):
        """Leave static mode (the caches stay valid for eager use)."""
        self.graph = self.log_probs = None
        self.spares.clear()
        for cache in self.caches:
            cache.set_static(False)
