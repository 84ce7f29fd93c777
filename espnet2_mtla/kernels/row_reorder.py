"""Triton kernel: a static cache buffer's beam reorder in place, moving only what is held.

For every row r whose back-pointer ``index[r]`` is another row, the first
``filled[index[r]]`` slots of row ``index[r]`` become row r's (a slot: everything after the
first two axes, e.g. one latent entry). Two launches through a spare of the same shape:
the first copies every source into the spare, the second copies the spare back, so no
row is overwritten before it is read and the buffer keeps its storage (one CUDA graph
serves every step; swapping buffer and spare instead moved the buffers through a cycle
of L + 1 graphs to capture). Slots past ``filled`` and rows that keep their own content
are not touched: a latent cache's unwritten entries are never read.
"""

import triton
import triton.language as tl

BLOCK = 1024  # elements one program moves


@triton.jit
def _move_rows(
    SOURCE, TARGET, INDEX, FILLED, filled_stride, row_stride, slot_elements,
    FROM_INDEX: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    origin = tl.load(INDEX + row)
    held = tl.load(FILLED + origin * filled_stride).to(tl.int64) * slot_elements  # to move
    offsets = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = (offsets < held) & (origin != row)
    if FROM_INDEX:  # source row -> the spare's row r
        values = tl.load(SOURCE + origin * row_stride + offsets, mask=mask)
    else:  # the spare's row r -> row r
        values = tl.load(SOURCE + row * row_stride + offsets, mask=mask)
    tl.store(TARGET + row * row_stride + offsets, values, mask=mask)


def reorder_rows_in_place(buffer, spare, index, filled):
    """buffer[r, :filled[index[r]]] = buffer[index[r], :filled[index[r]]] for every row r.

    buffer, spare: (B, S, ...) contiguous, same shape and dtype (the spare's content is
    scratch); index: (B,) integer, any strides (Transformers' beam search passes a
    strided int32 column; the kernel reads it contiguous); filled: (B,) slots held per
    row, read before the move (stride 0: the same count for every row)."""
    index = index.contiguous()
    batch = buffer.shape[0]
    row_elements = buffer[0].numel()
    grid = (batch, triton.cdiv(row_elements, BLOCK))
    slot_elements = buffer[0, 0].numel()
    for source, target, from_index in ((buffer, spare, True), (spare, buffer, False)):
        _move_rows[grid](source, target, index, filled, filled.stride(0), buffer.stride(0),
                         slot_elements,
                         FROM_INDEX=from_index, BLOCK=BLOCK, num_warps=4)
