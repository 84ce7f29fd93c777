"""Decoding caches.

``KVCache`` holds per-token keys and values (MHA, MQA, GQA). ``LatentCache`` holds one
entry of [latent c^ (r); rope key (d_r)] per chunk of ``down_rate`` positions (MLA, MTLA).
Both grow in place (capacity doubles, so appending is amortised O(1) rather than a
concatenation per step), reorder along the batch axis for beam search with one gather,
and report their live size with ``nbytes()``. ``KVCache`` only stores. MTLA's chunk rule
(an entry is the sum of its chunk's weighted latents with the rope key of its newest
token) lives here, once for each input shape: ``merge_chunks`` for several tokens (a
prefill, also training, which has no cache: the module stores its entries with
``LatentCache.write``) and ``LatentCache.add_step`` for one token per row (fused into one
Triton kernel on CUDA).

Static mode (``set_static(True)``, for CUDA graphs): no tensor is replaced any more and
no shape depends on a host-side counter. Single decoding steps write at device-side
indices, reads span the whole capacity (slots not yet written are masked or skipped by
the decode kernel), and a reorder that keeps the batch size moves rows in place. One
decoding step can then be captured once and replayed; the host counter ``num_tokens``
is kept by whoever replays (see ``espnet2_mtla.inference.cuda_graph``).

``DecodingCache`` declares what the decoding side (beam search, the CUDA-graph runner,
the benchmark's baselines) may use of any layer's cache.
"""

from abc import ABC, abstractmethod

import torch

from espnet2_mtla.kernels import latent_update_kernel, row_reorder_kernel


class DecodingCache(ABC):
    """One attention layer's decoding cache, as the decoding side sees it.

    ``batch_size`` rows, ``next_position`` (B,) the position of each row's next token;
    ``reorder`` keeps rows ``batch_index`` (beam search); ``nbytes`` the bytes held and
    ``nbytes_bound`` an upper bound of it known on the host (no device sync).
    Capabilities: ``supports_static`` (``set_static`` works: CUDA graphs can replay steps
    on it; ``has_room`` says whether its capacity takes another step) and
    ``prefers_cuda_graphs`` (graphs are the default: they pay for this cache).
    """

    supports_static = False
    prefers_cuda_graphs = False
    batch_size: int
    next_position: torch.Tensor

    @abstractmethod
    def reorder(self, batch_index: torch.Tensor):
        """Keep rows ``batch_index`` (R,) in that order."""

    @abstractmethod
    def nbytes(self) -> int:
        """Bytes of the cached keys/values (or latents) held."""

    def nbytes_bound(self) -> int:
        return self.nbytes()

    def set_static(self, static: bool = True, spares=None):
        raise NotImplementedError(f"{type(self).__name__} has no static mode (CUDA graphs)")

    def has_room(self, steps: int = 1) -> bool:
        """Whether ``steps`` more single steps fit the preallocated capacity (static mode
        cannot grow; a graph is worth capturing only for a step that can still come)."""
        raise NotImplementedError(f"{type(self).__name__} has no static mode (CUDA graphs)")


def _reorder_rows(cache, names, batch_index, filled=None):
    """Gather rows ``batch_index`` of the named tensors.

    In static mode, when the batch size is kept, every tensor keeps its storage (a
    captured graph holds them): each large buffer (``cache.large_buffers``) is gathered
    into the spare of its name and copied back, small tensors are gathered in place.
    ``filled`` (B,), where given: how many slots (along axis 1) each row holds; on CUDA
    only those, and only of the rows that change, are moved (a Triton kernel), not the
    whole capacity. ``cache.spares`` may be one dict shared by the caches of all layers
    (scratch: a whole model needs one spare buffer per name, not one per layer).
    """
    in_place = cache.static and len(batch_index) == cache.batch_size
    for name in names:
        current = getattr(cache, name)
        if not in_place:
            setattr(cache, name, current.index_select(0, batch_index))
        elif name in cache.large_buffers:
            spare = spare_of(cache, name)
            kernel = row_reorder_kernel(current, spare) if filled is not None else None
            if kernel is not None:
                kernel(current, spare, batch_index, filled)
            else:
                torch.index_select(current, 0, batch_index, out=spare)
                current.copy_(spare)
        else:
            current.copy_(current.index_select(0, batch_index))
    cache.batch_size = len(batch_index)


def spare_of(cache, name: str) -> torch.Tensor:
    """The spare buffer (``cache.spares``) for the large buffer ``name`` of ``cache``,
    made where missing or of another shape or dtype (static reorders move rows through it)."""
    current = getattr(cache, name)
    spare = cache.spares.get(name)
    if spare is None or spare.shape != current.shape or spare.dtype != current.dtype:
        spare = cache.spares[name] = torch.empty_like(current)
    return spare


def grown(buffer: torch.Tensor, needed: int, time_axis: int = 1) -> torch.Tensor:
    """``buffer`` with at least ``needed`` slots along ``time_axis`` (doubling), data kept."""
    capacity = buffer.shape[time_axis]
    if needed <= capacity:
        return buffer
    new_capacity = max(needed, 2 * capacity, 16)
    shape = list(buffer.shape)
    shape[time_axis] = new_capacity
    larger = buffer.new_zeros(shape)
    larger.narrow(time_axis, 0, capacity).copy_(buffer)
    return larger


class KVCache(DecodingCache):
    """Keys and values (B, T, n_kv, d_h) after RoPE, with the padding mask of each step."""

    supports_static = True

    # Static mode works, but its reads span the whole capacity through a masked SDPA,
    # which lost to eager flash decoding in the beam benchmark (MQA/GQA by 2x): beam
    # search captures CUDA graphs for these caches only when asked to.
    prefers_cuda_graphs = False

    def __init__(self, batch_size, num_kv_heads, head_dim, device=None, dtype=None, capacity=0):
        self.batch_size = batch_size
        self.keys = torch.zeros(
            batch_size, capacity, num_kv_heads, head_dim, device=device, dtype=dtype
        )
        self.values = torch.zeros_like(self.keys)
        self.padding = torch.zeros(batch_size, capacity, dtype=torch.bool, device=device)
        self.next_position = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.num_tokens = 0  # time steps held (padded steps included)
        self.has_padding = False  # host flag: was any padding mask appended
        self.static = False
        self.write_index = None  # static mode: (1,) device copy of num_tokens
        self.large_buffers, self.spares = ("keys", "values", "padding"), {}  # static reorders

    def set_static(self, static: bool = True, spares=None):
        """Enter (or leave) static mode; the capacity must then hold every later step.
        spares: a dict of spare buffers to share with other caches (see _reorder_rows)."""
        self.static = static
        self.spares = {} if spares is None else spares
        self.write_index = torch.tensor([self.num_tokens], device=self.keys.device)

    def has_room(self, steps: int = 1) -> bool:
        return self.num_tokens + steps <= self.keys.shape[1]

    def append(self, keys, values, padding, positions):
        """Add Tn steps; returns keys, values (B, T, n_kv, d_h) and padding (B, T) so far.

        In static mode (one step, no padding) the whole capacity is returned, with the
        slots not written yet marked as padding.
        """
        if self.static:
            return self._append_static(keys, values, padding, positions)
        start, count = self.num_tokens, keys.shape[1]
        self.keys = grown(self.keys, start + count)
        self.values = grown(self.values, start + count)
        self.padding = grown(self.padding, start + count)
        self.keys[:, start : start + count] = keys
        self.values[:, start : start + count] = values
        if padding is not None:
            # one sync per prompt; a padded single step is simply taken as padding
            self.has_padding |= count == 1 or bool(padding.any())
            self.padding[:, start : start + count] = padding
        elif self.has_padding:
            self.padding[:, start : start + count] = False
        self.num_tokens += count
        _advance_positions(self, positions, padding)
        end = self.num_tokens
        padding = self.padding[:, :end] if self.has_padding else None
        return self.keys[:, :end], self.values[:, :end], padding

    def _append_static(self, keys, values, padding, positions):
        if keys.shape[1] != 1 or padding is not None:
            raise ValueError("a static KVCache takes single decoding steps without padding")
        self.num_tokens += 1
        if self.num_tokens > self.keys.shape[1]:
            raise RuntimeError(f"static KVCache is full ({self.keys.shape[1]} steps)")
        self.keys.index_copy_(1, self.write_index, keys)
        self.values.index_copy_(1, self.write_index, values)
        self.padding.index_fill_(1, self.write_index, False)
        self.write_index += 1
        _advance_positions(self, positions, None)
        slots = torch.arange(self.keys.shape[1], device=self.keys.device)
        unwritten = slots >= self.write_index  # (capacity,)
        return self.keys, self.values, self.padding | unwritten

    def reorder(self, batch_index: torch.Tensor):
        """Keep rows ``batch_index`` (beam back-pointers), in that order."""
        # (static: every row holds the first write_index steps; (1,) -> (B,) by stride 0)
        filled = self.write_index.expand(self.batch_size) if self.static else None
        _reorder_rows(self, ("keys", "values", "padding", "next_position"), batch_index,
                      filled=filled)

    def nbytes(self) -> int:
        """Bytes of keys and values held: 2 * B * T * n_kv * d_h * itemsize."""
        per_step = self.keys[:, :1].numel() * self.keys.element_size()
        return 2 * per_step * self.num_tokens

    def nbytes_bound(self) -> int:
        return self.nbytes()  # exact on the host already


def chunks_spanned(length: int, down_rate: int, unmerged_tokens: int = 0) -> int:
    """Most chunks the positions of ``length`` tokens may span in ``merge_chunks``
    (which refuses more): consecutive positions from any offset, U = ``unmerged_tokens``
    leading tokens in chunks of their own: U + (T - U + 2s - 2) // s."""
    single = min(unmerged_tokens, length)
    return single + (length - single + 2 * down_rate - 2) // down_rate


def chunk_slots(positions, padding, down_rate, unmerged_tokens=0):
    """Where ``merge_chunks`` puts each token, from positions and padding alone (the
    layers of a stack call share it): (real (B, T), first chunk of each row (B,), slot of
    each token (B, T) in a table of num_chunks x s slots from the row's first chunk
    start on (num_slots for padding), the row-local slot (B, T) before that, num_chunks).
    Refuses real tokens whose positions leave the table (not consecutive)."""
    length = positions.shape[1]
    s = down_rate
    real = torch.ones_like(positions, dtype=torch.bool) if padding is None else ~padding
    chunk = torch.div(positions, s, rounding_mode="floor")
    first_chunk = chunk.masked_fill(~real, torch.iinfo(torch.long).max).amin(dim=1)
    first_chunk = torch.where(real.any(dim=1), first_chunk, 0)  # (B,)
    num_chunks = chunks_spanned(length, s, unmerged_tokens)
    num_slots = num_chunks * s
    local = positions - first_chunk[:, None] * s  # (B, T) slot of each token
    # (one token always fits: no check when decoding). On CUDA the check is
    # asynchronous: a host sync per layer would stall the launch queue in training;
    # traced (torch.export / compile) too: it cannot branch on data.
    if length > 1:
        out_of_chunks = ((local < 0) | (local >= num_slots)) & real
        message = "position: real tokens of a row must carry consecutive increasing positions"
        if local.is_cuda or torch.compiler.is_compiling():
            torch._assert_async(~out_of_chunks.any(), message)
        elif bool(out_of_chunks.any()):
            raise ValueError(message)
    slot = torch.where(real, local, num_slots)  # padding -> a dummy slot
    return real, first_chunk, slot, local, num_chunks


def merge_chunks(latent, k_pe, positions, padding, carry, down_rate, unmerged_tokens=0,
                 *, with_entries=True, slots=None):
    """MTLA's chunk rule over several tokens (a prefill, a training row): the partial
    chunk state after every token, and the cache entry of every chunk (its latents' sum,
    the rope key of its newest token). ``LatentCache.add_step`` applies the same rule to
    one token per row.

    latent: (B, T, r) already weighted (w_j c_j) and zero at padding; k_pe (B, T, d_r).
    carry: None, or (latent (B, r), chunk (B,)) of each row's newest cached entry,
    added to the chunk it continues.
    unmerged_tokens: how many leading columns may each be a chunk of their own.
    with_entries: False where no cache is written and no strided prefill reads them (a
    training step): entries and validity are None, ~10 operations fewer per layer.
    slots: ``chunk_slots`` of these positions and padding, where the caller has it.
    Returns columns (B, T, r); first chunk of each row (B,); entries (B, nC, r + d_r)
    and validity (B, nC) of chunks first_chunk .. first_chunk + nC - 1; and which
    rows continue their cached chunk (B,) (None without carry).
    """
    batch, length, rank = latent.shape
    s = down_rate
    if slots is None:
        slots = chunk_slots(positions, padding, down_rate, unmerged_tokens)
    real, first_chunk, slot, local, num_chunks = slots
    num_slots = num_chunks * s
    table = latent.new_zeros(batch, num_slots + 1, rank)
    table.scatter_add_(1, slot[..., None].expand(-1, -1, rank), latent)
    # (B, nC, s, r): running sum inside each chunk = its state after each offset
    states = table[:, :num_slots].view(batch, num_chunks, s, rank).cumsum(dim=2)
    continues = None
    if carry is not None:
        carry_latent, carry_chunk = carry
        continues = (carry_chunk == first_chunk) & real.any(dim=1)
        carried = torch.where(continues[:, None], carry_latent, 0.0)
        states[:, 0] += carried[:, None, :]
    flat_states = torch.cat([states.flatten(1, 2), states.new_zeros(batch, 1, rank)], 1)
    columns = flat_states.gather(1, slot[..., None].expand(-1, -1, rank))  # (B, T, r)
    if not with_entries:
        return columns, first_chunk, None, None, continues

    # each chunk's entry: its full state and the rope key of its newest token
    newest = torch.full((batch, num_chunks + 1), -1, device=positions.device)
    newest.scatter_reduce_(1, torch.div(slot, s, rounding_mode="floor"),
                           torch.where(real, local, -1), reduce="amax")
    newest = newest[:, :num_chunks]  # (B, nC) slot of the newest token, -1 if none
    rope_table = k_pe.new_zeros(batch, num_slots + 1, k_pe.shape[-1])
    rope_table.scatter_(1, slot[..., None].expand(-1, -1, k_pe.shape[-1]), k_pe)
    chunk_rope = rope_table.gather(
        1, newest.clamp(min=0)[..., None].expand(-1, -1, k_pe.shape[-1])
    )
    chunk_entries = torch.cat([states[:, :, -1], chunk_rope], dim=-1)
    return columns, first_chunk, chunk_entries, newest >= 0, continues


class LatentCache(DecodingCache):
    """One [c^; k_pe] entry (width r + d_r) per chunk of ``down_rate`` positions.

    Row b's entry e holds chunk ``first_chunk[b] + e`` (chunk = position // down_rate),
    so rows may start at different positions and hold different numbers of entries
    (``num_entries``); a left-padded batch stays equal to its rows decoded alone.
    """

    supports_static = True
    prefers_cuda_graphs = True  # the decode kernel skips unwritten entries

    def __init__(
        self, batch_size, kv_lora_rank, rope_dim, down_rate, device=None, dtype=None, capacity=0,
        unmerged_tokens=0,
    ):
        """capacity: tokens to preallocate for (the cache grows past it if needed);
        unmerged_tokens: how many of the first steps may each be a chunk of its own (a
        prefix kept unmerged, ``DecoderOnlyStack(merge_prefix=False)``), for the bounds."""
        self.batch_size = batch_size
        self.kv_lora_rank = kv_lora_rank
        self.down_rate = down_rate
        self.unmerged_tokens = unmerged_tokens
        # entries: (B, capacity + 1, r + d_r); the last slot absorbs masked-out writes
        self.entries = torch.zeros(
            batch_size,
            self._entries_bound(capacity) + 1,
            kv_lora_rank + rope_dim,
            device=device,
            dtype=dtype,
        )
        self.num_entries = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.first_chunk = torch.full((batch_size,), -1, dtype=torch.long, device=device)
        self.next_position = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.num_tokens = 0  # time steps appended (padded steps included)
        self.static = False
        self.large_buffers, self.spares = ("entries",), {}  # static reorders

    def set_static(self, static: bool = True, spares=None):
        """Enter (or leave) static mode; the capacity must then hold every later step.
        spares: a dict of spare buffers to share with other caches (see _reorder_rows)."""
        self.static = static
        self.spares = {} if spares is None else spares

    def has_room(self, steps: int = 1) -> bool:
        return self._entries_bound(self.num_tokens + steps) <= self.capacity

    def _entries_bound(self, num_tokens: int) -> int:
        """Most entries a row can hold after ``num_tokens`` steps (a row may start mid-chunk;
        the first ``unmerged_tokens`` steps may each hold one)."""
        if num_tokens <= self.unmerged_tokens:
            return num_tokens
        return chunks_spanned(num_tokens, self.down_rate, self.unmerged_tokens)

    def reserve(self, num_tokens: int):
        """Room for ``num_tokens`` steps in all (a static cache cannot grow later): the
        entries are reallocated at exactly that size where smaller, data kept."""
        needed = self._entries_bound(num_tokens)
        if needed > self.capacity:
            larger = self.entries.new_zeros(self.batch_size, needed + 1, self.entries.shape[-1])
            larger[:, : self.capacity].copy_(self.entries[:, : self.capacity])
            self.entries = larger

    def _reserve(self, new_tokens: int):
        """Count ``new_tokens`` more steps and grow the entries to hold them."""
        self.num_tokens += new_tokens
        needed = self._entries_bound(self.num_tokens)
        if needed > self.capacity and self.static:
            raise RuntimeError(f"static LatentCache is full ({self.capacity} entries)")
        if needed > self.capacity:  # the old dummy slot becomes an entry, written before use
            self.entries = grown(self.entries, needed + 1)

    @property
    def max_entries(self) -> int:
        """Host-side bound on num_entries.max() (exact but for a chunk-misaligned start,
        and for rows shorter than the longest): reads use it without a device sync."""
        return min(self._entries_bound(self.num_tokens), self.capacity)

    @property
    def read_entries(self) -> int:
        """Entries a read spans: ``max_entries``, or the whole capacity in static mode."""
        return self.capacity if self.static else self.max_entries

    @property
    def capacity(self) -> int:
        return self.entries.shape[1] - 1

    def tail(self):
        """Latent (B, r) and chunk index (B,) of each row's newest entry; chunk -1 if empty."""
        last = (self.num_entries - 1).clamp(min=0)
        latent = self.entries[torch.arange(self.batch_size), last, : self.kv_lora_rank]
        chunk = torch.where(
            self.num_entries > 0, self.first_chunk + self.num_entries - 1, -1
        )
        return latent, chunk

    def held(self):
        """Entries (B, N, r + d_r), zero where not valid, and their validity (B, N).

        N is ``read_entries``; slots past a row's own entries may never have been written
        (after a reorder), hence the zeros.
        """
        count = self.read_entries
        valid = torch.arange(count, device=self.entries.device) < self.num_entries[:, None]
        return self.entries[:, :count].masked_fill(~valid[..., None], 0.0), valid

    def write(self, first_new_chunk, chunk_entries, chunk_valid, positions, padding):
        """Store entries of chunks ``first_new_chunk + k`` (k < nC) where ``chunk_valid``.

        first_new_chunk: (B,); chunk_entries: (B, nC, r + d_r); chunk_valid: (B, nC).
        An entry of a chunk already held is overwritten (its latent includes the old sum).
        """
        has_new = chunk_valid.any(dim=1)
        self.first_chunk = torch.where(
            (self.first_chunk < 0) & has_new, first_new_chunk, self.first_chunk
        )
        offsets = torch.arange(chunk_entries.shape[1], device=chunk_entries.device)
        entry_index = (first_new_chunk - self.first_chunk)[:, None] + offsets  # (B, nC)
        newest = torch.where(chunk_valid, entry_index + 1, 0).amax(dim=1)
        self.num_entries = torch.maximum(self.num_entries, newest)
        self._reserve(positions.shape[1])
        slot = torch.where(chunk_valid, entry_index, self.capacity)  # dummy slot if invalid
        width = chunk_entries.shape[-1]
        self.entries.scatter_(1, slot[..., None].expand(-1, -1, width), chunk_entries)
        _advance_positions(self, positions, padding)

    def add_step(self, latent, rope, positions, merge=None):
        """Merge one token per row (no padding): latent (B, r), rope key (B, d_r),
        positions (B,). A token that starts a chunk opens a new entry, any other is
        added to its chunk's entry, whose rope key it overwrites. merge: MTLA's merge
        hyper-network (``MergeHyperNetwork``), whose weight w multiplies the latent c
        first (in the kernel on CUDA); None: the latent is merged as given."""
        self._reserve(1)
        kernel = latent_update_kernel(self.entries, self.kv_lora_rank, rope.shape[-1], merge)
        if kernel is not None:
            kernel(self, latent, rope, positions, merge)
            return
        if merge is not None:
            latent = latent * merge(latent[:, None], positions[:, None])[:, 0]  # w c
        # every update in place (static mode: a captured graph holds these tensors)
        chunk = torch.div(positions, self.down_rate, rounding_mode="floor")
        self.first_chunk.copy_(torch.where(self.first_chunk < 0, chunk, self.first_chunk))
        entry = chunk - self.first_chunk  # (B,)
        rows = torch.arange(self.batch_size, device=positions.device)
        continued = (entry < self.num_entries)[:, None]
        old = self.entries[rows, entry, : self.kv_lora_rank]
        merged = torch.where(continued, old + latent, latent)
        self.entries[rows, entry] = torch.cat([merged, rope], dim=-1)
        self.num_entries.copy_(torch.maximum(self.num_entries, entry + 1))
        self.next_position.copy_(positions + 1)

    def crop(self, num_tokens: int) -> int:
        """Forget every step after the first ``num_tokens`` (speculative decoding rejects
        drafted tokens), in whole chunks: the chunk the cut falls in is dropped too (its
        entry sums tokens that go), and the number of its tokens that were to stay is
        returned: the caller feeds those again, which rebuilds the chunk exactly. The
        dropped steps must be real tokens of every row, and the rows must agree on where
        the cut falls in its chunk (one row always does). Dynamic mode only."""
        dropped = self.num_tokens - num_tokens
        if self.static:
            raise RuntimeError("a static LatentCache (CUDA graphs) cannot be cropped")
        if dropped < 0 or num_tokens < 0:
            raise ValueError(f"cannot crop a cache of {self.num_tokens} steps to {num_tokens}")
        if dropped == 0:
            return 0
        keep_position = self.next_position - dropped  # (B,) positions below it stay
        if bool((keep_position < 0).any()):
            raise ValueError(f"cannot drop {dropped} steps: a row holds fewer real tokens")
        refeed = torch.remainder(keep_position, self.down_rate)  # kept tokens of the cut chunk
        count = int(refeed[0])
        if bool((refeed != count).any()):
            raise ValueError("cannot crop inside merged chunks at different offsets per row "
                             "(rows padded differently); crop one row at a time")
        whole_chunks = torch.div(keep_position, self.down_rate, rounding_mode="floor")
        self.num_entries = torch.where(self.first_chunk >= 0,
                                       (whole_chunks - self.first_chunk).clamp(min=0), 0)
        self.first_chunk = torch.where(self.num_entries > 0, self.first_chunk, -1)
        self.next_position = keep_position - refeed
        self.num_tokens = num_tokens - count
        return count

    def reorder(self, batch_index: torch.Tensor):
        """Keep rows ``batch_index`` (beam back-pointers), in that order."""
        # (entries first: their move reads the rows' entry counts before those move)
        names = ("entries", "num_entries", "first_chunk", "next_position")
        _reorder_rows(self, names, batch_index, filled=self.num_entries)

    def nbytes_bound(self) -> int:
        """``nbytes()`` from the host-side entry bound: no device sync, at most one entry
        per row more than exact (a chunk-misaligned start or padding)."""
        width = self.entries.shape[-1]
        return self.batch_size * self.max_entries * width * self.entries.element_size()

    def nbytes(self) -> int:
        """Bytes of the entries held: B * ceil(T / down_rate) * (r + d_r) * itemsize."""
        if self.batch_size == 0:
            return 0
        held = int(self.num_entries.max())  # exact (one device sync)
        width = self.entries.shape[-1]
        return self.batch_size * held * width * self.entries.element_size()


def _advance_positions(cache, positions, padding):
    """next_position = 1 + newest real position of each row (unchanged for all-pad rows)."""
    if padding is None:  # positions increase along time: the last one is the newest
        cache.next_position.copy_(positions[:, -1] + 1)  # in place: see static mode
        return
    positions = positions.masked_fill(padding, -1)
    newest = positions.amax(dim=1)
    cache.next_position = torch.where(newest >= 0, newest + 1, cache.next_position)
