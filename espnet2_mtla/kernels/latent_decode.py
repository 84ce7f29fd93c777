"""Triton decode kernel for MLA/MTLA: one query step against the latent cache.

Per row b and head h, with entries e_n = [c_n (R); k_n (P)] shared by all heads:

    s_hn = scale * (q_lat_h . c_n + q_pe_h . k_n),   out_h = sum_n softmax_n(s_hn) c_n

for n < num_entries[b]. Flash-decoding: the cache's time axis is cut into splits so
that a small batch still fills the GPU; each program streams its split's entries once
(all heads share them, so the cache is read once per step), keeps an online softmax,
and writes a partial (max, sum, R-vector) per head; a second kernel combines the splits.
fp16, bf16 and fp32 (fp32 dot products in IEEE precision). The PyTorch path in
``MultiheadTemporalLatentAttention._decode_step`` computes the same and is the oracle.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def _attend_tile(first, stop, kv_row, stride_kn, q_lat, q_pe, dims, ropes, scale,
                 running_max, running_sum, acc,
                 RANK: tl.constexpr, BLOCK_N: tl.constexpr, IEEE: tl.constexpr):
    """Online softmax over the entries first .. first + BLOCK_N (those < stop)."""
    n = first + tl.arange(0, BLOCK_N)
    ok = n < stop
    latent = tl.load(kv_row + n[:, None] * stride_kn + dims[None, :],
                     mask=ok[:, None], other=0.0)  # (BN, R)
    rope = tl.load(kv_row + n[:, None] * stride_kn + RANK + ropes[None, :],
                   mask=ok[:, None], other=0.0)  # (BN, P)
    if IEEE:
        scores = tl.dot(q_lat, tl.trans(latent), input_precision="ieee")
        scores += tl.dot(q_pe, tl.trans(rope), input_precision="ieee")
    else:
        scores = tl.dot(q_lat, tl.trans(latent))
        scores += tl.dot(q_pe, tl.trans(rope))
    # (fp32 whatever type the caller's float took: torch.compile passes it as fp64)
    scores = tl.where(ok[None, :], (scores * scale).to(tl.float32), float("-inf"))  # (BH, BN)
    new_max = tl.maximum(running_max, tl.max(scores, 1))
    rescale = tl.exp(running_max - new_max)
    probs = tl.exp(scores - new_max[:, None])
    running_sum = running_sum * rescale + tl.sum(probs, 1)
    if IEEE:
        acc = acc * rescale[:, None] + tl.dot(probs, latent, input_precision="ieee")
    else:
        acc = acc * rescale[:, None] + tl.dot(probs.to(latent.dtype), latent)
    return new_max, running_sum, acc


@triton.jit
def _decode_partial(
    Q, KV, LENGTHS, ACC, MAX, SUM,
    stride_qb, stride_qh, stride_kb, stride_kn,
    stride_ab, stride_as, stride_ah, stride_mb, stride_ms,
    scale, per_split,
    HEADS: tl.constexpr, BLOCK_H: tl.constexpr, RANK: tl.constexpr, ROPE: tl.constexpr,
    BLOCK_N: tl.constexpr, IEEE: tl.constexpr, INTERPRET: tl.constexpr,
    MIN_LENGTH: tl.constexpr,
):
    row = tl.program_id(0)
    split = tl.program_id(1)
    # MIN_LENGTH 1: an empty row reads its zero entry; 0: an empty part of a row's entries
    # (the shared prefix) adds nothing (max -inf, sum 0), which the combine weighs as 0
    length = tl.maximum(tl.load(LENGTHS + row), MIN_LENGTH)
    start = split * per_split
    stop = tl.minimum(start + per_split, length)

    heads = tl.arange(0, BLOCK_H)
    dims = tl.arange(0, RANK)
    ropes = tl.arange(0, ROPE)
    head_ok = heads < HEADS
    q_row = Q + row * stride_qb + heads[:, None] * stride_qh
    q_lat = tl.load(q_row + dims[None, :], mask=head_ok[:, None], other=0.0)  # (BH, R)
    q_pe = tl.load(q_row + RANK + ropes[None, :], mask=head_ok[:, None], other=0.0)  # (BH, P)

    running_max = tl.full([BLOCK_H], float("-inf"), tl.float32)
    running_sum = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, RANK], tl.float32)
    kv_row = KV + row * stride_kb
    if INTERPRET:  # Triton's interpreter cannot loop over run-time bounds with range()
        first = start
        while first < stop:
            running_max, running_sum, acc = _attend_tile(
                first, stop, kv_row, stride_kn, q_lat, q_pe, dims, ropes, scale,
                running_max, running_sum, acc, RANK, BLOCK_N, IEEE)
            first += BLOCK_N
    else:  # a range() loop is software-pipelined (loads of the next tile in flight)
        for first in range(start, stop, BLOCK_N):
            running_max, running_sum, acc = _attend_tile(
                first, stop, kv_row, stride_kn, q_lat, q_pe, dims, ropes, scale,
                running_max, running_sum, acc, RANK, BLOCK_N, IEEE)

    partial = ACC + row * stride_ab + split * stride_as + heads[:, None] * stride_ah
    tl.store(partial + dims[None, :], acc, mask=head_ok[:, None])
    stats = row * stride_mb + split * stride_ms + heads
    tl.store(MAX + stats, running_max, mask=head_ok)
    tl.store(SUM + stats, running_sum, mask=head_ok)


@triton.jit
def _decode_combine(
    ACC, MAX, SUM, OUT, num_splits,
    stride_ab, stride_as, stride_ah, stride_mb, stride_ms, stride_ob, stride_oh,
    RANK: tl.constexpr, BLOCK_S: tl.constexpr,
):
    row = tl.program_id(0)
    head = tl.program_id(1)
    splits = tl.arange(0, BLOCK_S)
    ok = splits < num_splits
    stats = row * stride_mb + splits * stride_ms + head
    split_max = tl.load(MAX + stats, mask=ok, other=float("-inf"))
    split_sum = tl.load(SUM + stats, mask=ok, other=0.0)
    weight = tl.where(ok, tl.exp(split_max - tl.max(split_max, 0)), 0.0)  # empty split: 0
    dims = tl.arange(0, RANK)
    acc = tl.load(ACC + row * stride_ab + splits[:, None] * stride_as + head * stride_ah
                  + dims[None, :], mask=ok[:, None], other=0.0)  # (S, R)
    out = tl.sum(acc * weight[:, None], 0) / tl.sum(weight * split_sum, 0)
    tl.store(OUT + row * stride_ob + head * stride_oh + dims, out.to(OUT.dtype.element_ty))


def _is_power_of_two_at_least_16(value: int) -> bool:
    return value >= 16 and value & (value - 1) == 0


def supports(query: torch.Tensor, rank: int) -> bool:
    """Shapes and dtypes the kernel handles (else use the PyTorch path)."""
    heads, width = query.shape[-2], query.shape[-1]
    return (
        query.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and _is_power_of_two_at_least_16(rank)
        and _is_power_of_two_at_least_16(width - rank)
        and heads <= 64
    )


def _split_plan(query, rows, max_entries, block_n):
    """(splits, entries per split) of a cache's time axis: enough programs to fill the
    GPU when ``rows`` is small, whole tiles of ``block_n`` entries per split."""
    if query.is_cuda:
        programs_wanted = 2 * torch.cuda.get_device_properties(query.device).multi_processor_count
    else:  # TRITON_INTERPRET=1 on the CPU
        programs_wanted = 4
    blocks = triton.cdiv(max(max_entries, 1), block_n)
    splits = max(1, min(triton.cdiv(programs_wanted, rows), blocks))
    per_split = triton.cdiv(blocks, splits) * block_n
    return triton.cdiv(max(max_entries, 1), per_split), per_split


def latent_attention_decode(query, entries, num_entries, rank, scale, max_entries,
                            block_n=None, num_warps=4, num_stages=None):
    """Attention of one query step over the latent cache.

    query: (B, H, R + P) = [q_nope W_uk; q_pe] per head; entries: (B, N_cap, R + P) with
    the last dimension contiguous; num_entries: (B,) valid entries per row; max_entries:
    a host-side bound on num_entries.max() (sizes the grid, no device sync).
    Returns (B, H, R) in the query's dtype.
    """
    batch, heads, _ = query.shape
    query = query.contiguous()
    # tiles of 32 entries, 4 stages deep: 90% of copy bandwidth at batch 64 x 32k entries
    # and 96% at batch 128 (bf16, H100; bench/results/h100_2026-11-23/kernel.csv)
    block_n = block_n or 32
    splits, per_split = _split_plan(query, batch, max_entries, block_n)
    acc, split_max, split_sum = _partials(splits, batch, heads, rank, query.device)
    _launch_partial(query, entries, num_entries, (acc, split_max, split_sum), per_split,
                    rank, scale, block_n, num_warps, num_stages, min_length=1)
    return _combine(acc, split_max, split_sum, query.dtype)


def _partials(splits, rows, heads, rank, device):
    """Buffers of the splits' partial results, laid out (split, row, head[, R]): acc,
    max and sum (fp32)."""
    acc = torch.empty(splits, rows, heads, rank, device=device, dtype=torch.float32)
    split_max = torch.empty(splits, rows, heads, device=device, dtype=torch.float32)
    return acc, split_max, torch.empty_like(split_max)


def _launch_partial(query, entries, lengths, partials, per_split, rank, scale, block_n,
                    num_warps, num_stages, min_length, rows_per_program=1):
    """``_decode_partial`` over every split of ``partials`` (acc, max, sum as ``_partials``
    lays them out; their splits are this launch's). A program serves ``rows_per_program``
    consecutive query rows (B) as one row of rows_per_program * H heads over one row of
    ``entries``/``lengths``: 1 for a row's own entries, K for a group's shared ones."""
    acc, split_max, split_sum = partials
    programs, heads = lengths.shape[0], rows_per_program * query.shape[1]
    block_h = max(16, triton.next_power_of_2(heads))
    if block_h > 64:  # a (K * H) x R accumulator: more warps to hold it, fewer stages
        num_warps, num_stages = 8, 2
    _decode_partial[(programs, acc.shape[0])](
        query, entries, lengths, acc, split_max, split_sum,
        rows_per_program * query.stride(0), query.stride(1),
        entries.stride(0), entries.stride(1),
        rows_per_program * acc.stride(1), acc.stride(0), acc.stride(2),
        rows_per_program * split_max.stride(1), split_max.stride(0),
        scale, per_split,
        HEADS=heads, BLOCK_H=block_h, RANK=rank, ROPE=query.shape[-1] - rank, BLOCK_N=block_n,
        IEEE=query.dtype == torch.float32, INTERPRET=not query.is_cuda, MIN_LENGTH=min_length,
        num_warps=num_warps,
        num_stages=num_stages or (4 if query.element_size() <= 2 else 3),
    )


def _combine(acc, split_max, split_sum, dtype):
    """(B, H, R) in ``dtype``: every row's splits merged by their log-sum-exp."""
    splits, batch, heads, rank = acc.shape
    out = torch.empty(batch, heads, rank, device=acc.device, dtype=dtype)
    _decode_combine[(batch, heads)](
        acc, split_max, split_sum, out, splits,
        acc.stride(1), acc.stride(0), acc.stride(2), split_max.stride(1), split_max.stride(0),
        out.stride(0), out.stride(1),
        RANK=rank, BLOCK_S=max(2, triton.next_power_of_2(splits)),
    )
    return out


def supports_shared(query: torch.Tensor, rank: int, group_size: int) -> bool:
    """Shapes the shared-prefix decode handles: the group's K beams x H heads are one
    program's heads over the shared entries (at most 128)."""
    return supports(query, rank) and query.shape[-2] * group_size <= 128


def latent_attention_decode_shared(query, own_entries, own_num, own_max, shared_entries,
                                   shared_num, shared_max, group_size, rank, scale,
                                   block_n=32, num_warps=4, num_stages=None):
    """Attention of one query step over [the utterance's shared entries; the row's own],
    one softmax, as ``latent_attention_decode`` over their concatenation.

    query: (B, H, R + P), B = G * K rows in groups of K beams; own_entries (B, N_o, R + P)
    and own_num (B,); shared_entries (G, N_s, R + P) and shared_num (G,), which may be 0;
    own_max / shared_max: host-side bounds of the counts. The shared entries are read
    once per group: its K beams' queries are the K * H heads of one program. Both parts
    write partial (max, sum, R-vector) splits into one buffer laid out (split, row, head),
    so a group's K * H heads land on its K rows; the combine merges all splits by their
    log-sum-exp. Returns (B, H, R) in the query's dtype.
    """
    batch, heads, _ = query.shape
    groups = batch // group_size
    query = query.contiguous()
    own_splits, own_per_split = _split_plan(query, batch, own_max, block_n)
    shared_splits, shared_per_split = _split_plan(query, groups, shared_max, block_n)
    acc, split_max, split_sum = _partials(own_splits + shared_splits, batch, heads, rank,
                                          query.device)
    launch = dict(rank=rank, scale=scale, block_n=block_n, num_warps=num_warps,
                  num_stages=num_stages, min_length=0)
    # each row's own entries: rows of H heads, the first splits
    _launch_partial(query, own_entries, own_num,
                    (acc[:own_splits], split_max[:own_splits], split_sum[:own_splits]),
                    own_per_split, **launch)
    # the shared entries: a group's K rows as one row of K * H heads, the splits after
    _launch_partial(query, shared_entries, shared_num,
                    (acc[own_splits:], split_max[own_splits:], split_sum[own_splits:]),
                    shared_per_split, rows_per_program=group_size, **launch)
    return _combine(acc, split_max, split_sum, query.dtype)
