"""Checks of the Triton latent decode kernel against a float64 reference.

Run by test_kernels.py: on the CPU under TRITON_INTERPRET=1 (in a subprocess, so the
variable is set before Triton loads), and on CUDA directly.
"""

import sys

import torch


def reference(query, entries, num_entries, rank, scale):
    out = []
    for row in range(query.shape[0]):
        length = max(int(num_entries[row]), 1)
        kv = entries[row, :length].double()
        scores = query[row].double() @ kv.T * scale  # (H, N)
        out.append(scores.softmax(-1) @ kv[:, :rank])
    return torch.stack(out)


def check(device, dtype, batch, heads, rank, rope, lengths, capacity, seed=0):
    from espnet2_mtla.kernels.latent_decode import latent_attention_decode

    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, heads, rank + rope, generator=generator).to(device, dtype)
    entries = torch.randn(batch, capacity, rank + rope, generator=generator).to(device, dtype)
    num_entries = torch.tensor(lengths, device=device)
    scale = (rank + rope) ** -0.5
    out = latent_attention_decode(query, entries, num_entries, rank, scale, max(lengths))
    expected = reference(query.cpu(), entries.cpu(), num_entries.cpu(), rank, scale)
    error = ((out.cpu().double() - expected).norm() / expected.norm()).item()
    bound = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    assert out.dtype == dtype and out.shape == (batch, heads, rank)
    assert torch.isfinite(out).all()
    assert error < bound, (dtype, lengths, error)
    return error


def check_shared(device, dtype, groups, group_size, heads, rank, rope, own_lengths,
                 shared_lengths, seed=0):
    """The shared-prefix decode equals the plain reference over [shared; own] per row."""
    from espnet2_mtla.kernels.latent_decode import latent_attention_decode_shared

    generator = torch.Generator().manual_seed(seed)
    batch, width = groups * group_size, rank + rope
    query = torch.randn(batch, heads, width, generator=generator).to(device, dtype)
    own = torch.randn(batch, max(own_lengths) + 3, width, generator=generator).to(device, dtype)
    shared = torch.randn(groups, max(shared_lengths) + 2, width,
                         generator=generator).to(device, dtype)
    own_num = torch.tensor(own_lengths, device=device)
    shared_num = torch.tensor(shared_lengths, device=device)
    scale = width ** -0.5
    out = latent_attention_decode_shared(query, own, own_num, own.shape[1], shared, shared_num,
                                         max(shared_lengths), group_size, rank, scale)
    joined, lengths = [], []
    for row in range(batch):
        group = row // group_size
        parts = [shared[group, :shared_lengths[group]], own[row, :own_lengths[row]]]
        joined.append(torch.cat(parts).cpu())
        lengths.append(len(joined[-1]))
    padded = torch.zeros(batch, max(lengths), width, dtype=dtype)
    for row, entries in enumerate(joined):
        padded[row, :len(entries)] = entries
    expected = reference(query.cpu(), padded, torch.tensor(lengths), rank, scale)
    error = ((out.cpu().double() - expected).norm() / expected.norm()).item()
    bound = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    assert out.shape == (batch, heads, rank) and torch.isfinite(out).all()
    assert error < bound, (dtype, own_lengths, shared_lengths, error)


def check_update(device, dtype, down_rate, seed=0):
    """The fused single-step cache update equals LatentCache.add_step's PyTorch path."""
    from espnet2_mtla.attention.cache import LatentCache
    from espnet2_mtla.kernels import kernels_set
    from espnet2_mtla.kernels.latent_update import latent_add_step

    generator = torch.Generator().manual_seed(seed)
    rank, rope, batch = 32, 16, 5
    caches = []
    for _ in range(2):
        cache = LatentCache(batch, rank, rope, down_rate, device=device, dtype=dtype, capacity=40)
        caches.append(cache)
    start = torch.tensor([0, 3, 7, 1, 0])  # rows at different positions, one still empty
    initial = torch.randn(batch, 10, rank + rope, generator=generator).to(device, dtype)
    filled = (start + down_rate - 1) // down_rate
    for cache in caches:
        cache.entries[:, :10] = initial
        cache.num_entries = filled.to(device).clone()
        cache.first_chunk = torch.where(filled > 0, 0, -1).to(device)
        cache.num_tokens = int(start.max())
    for step in range(2 * down_rate + 1):
        positions = (start + step).to(device)
        latent = torch.randn(batch, rank, generator=generator).to(device, dtype)
        key = torch.randn(batch, rope, generator=generator).to(device, dtype)
        latent_add_step(caches[0], latent, key, positions)
        caches[0].num_tokens += 1
        with kernels_set(False):
            caches[1].add_step(latent, key, positions)  # the PyTorch path
    for name in ("num_entries", "first_chunk", "next_position"):
        assert torch.equal(getattr(caches[0], name), getattr(caches[1], name)), name
    for row in range(batch):
        held = int(caches[0].num_entries[row])
        assert torch.equal(caches[0].entries[row, :held], caches[1].entries[row, :held]), row


def check_merge_update(device, dtype, down_rate, rank=32, seed=0):
    """The update with the merge weight computed in the kernel (MTLA's decoding step)
    equals the PyTorch path (the hyper-network's weight, then the merge), at positions
    near 0 and in the tens of thousands (large sinusoid angles)."""
    from espnet2_mtla.attention.cache import LatentCache
    from espnet2_mtla.attention.mtla import MergeHyperNetwork
    from espnet2_mtla.kernels import kernels_set, latent_update_kernel
    from espnet2_mtla.kernels.latent_update import latent_add_step

    torch.manual_seed(seed)
    merge = MergeHyperNetwork(rank, down_rate)
    torch.nn.init.normal_(merge.fc_p.weight, std=0.3)  # (it starts at zero: w = 0.5)
    torch.nn.init.normal_(merge.fc_p.bias, std=0.3)
    merge = merge.to(device, dtype)
    rope, batch = 16, 4
    caches = [LatentCache(batch, rank, rope, down_rate, device=device, dtype=dtype,
                          capacity=64) for _ in range(2)]
    assert latent_update_kernel(caches[0].entries, rank, rope, merge) is not None or \
        device == "cpu"
    start = torch.tensor([0, 5, 20001, 47999])
    weights = []
    for step in range(2 * down_rate + 1):
        positions = (start + step).to(device)
        latent = torch.randn(batch, rank).to(device, dtype)
        key = torch.randn(batch, rope).to(device, dtype)
        latent_add_step(caches[0], latent, key, positions, merge)
        caches[0].num_tokens += 1
        with kernels_set(False), torch.no_grad():
            caches[1].add_step(latent, key, positions, merge)  # the PyTorch path
            weights.append(merge(latent[:, None], positions[:, None]).float())
    spread = float(torch.cat(weights).std())
    assert spread > 0.05, spread  # the weights differ by token: the check sees them
    for name in ("num_entries", "first_chunk", "next_position"):
        assert torch.equal(getattr(caches[0], name), getattr(caches[1], name)), name
    # float32 alike to rounding; half precision within a few of its rounding steps (the
    # kernel sums in float32 where PyTorch rounds each product)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    for row in range(batch):
        held = int(caches[0].num_entries[row])
        fused, plain = caches[0].entries[row, :held].float(), caches[1].entries[row, :held].float()
        error = float((fused - plain).abs().max() / plain.abs().max())
        assert error < tolerance, (dtype, down_rate, row, error)


def check_reorder(device, dtype, batch, slots, width, seed=0, one_count=False,
                  strided_index=False):
    """The in-place reorder of held slots: rows whose back-pointer is another row take
    that row's first ``filled`` slots; nothing else changes (rows kept, slots past).
    one_count: every row holds the same count, given as a (1,) tensor expanded (stride
    0, as a static KVCache's write index); width 0: a (B, S) buffer (its padding);
    strided_index: the back-pointers as an int32 column of a wider tensor (stride 3, as
    Transformers' beam search passes them)."""
    from espnet2_mtla.kernels.row_reorder import reorder_rows_in_place

    generator = torch.Generator().manual_seed(seed)
    shape = (batch, slots, width) if width else (batch, slots)
    buffer = torch.randn(shape, generator=generator)
    buffer = (buffer > 0 if dtype == torch.bool else buffer.to(dtype)).to(device)
    original = buffer.clone()
    index = torch.randint(0, batch, (batch,), generator=generator)
    index[::3] = torch.arange(batch)[::3]  # some rows keep their own
    filled = torch.randint(0, slots + 1, (batch,), generator=generator)
    filled[int(index[1])] = slots  # one source entirely full
    if one_count:
        filled = filled[:1].expand(batch)
    spare = torch.zeros_like(buffer)
    device_filled = filled[:1].to(device).expand(batch) if one_count else filled.to(device)
    device_index = index.to(device)
    if strided_index:
        device_index = torch.stack([device_index.flip(0), device_index, device_index.flip(0)],
                                   dim=1).int()[:, 1]
        assert not device_index.is_contiguous()
    reorder_rows_in_place(buffer, spare, device_index, device_filled)
    buffer = buffer.cpu()
    original = original.cpu()
    for row in range(batch):
        origin, held = int(index[row]), int(filled[index[row]])
        if origin == row:
            assert torch.equal(buffer[row], original[row]), row
            continue
        assert torch.equal(buffer[row, :held], original[origin, :held]), row
        assert torch.equal(buffer[row, held:], original[row, held:]), row


def main(device):
    dtypes = [torch.float32, torch.float16] + ([torch.bfloat16] if device == "cuda" else [])
    for dtype in dtypes:
        check(device, dtype, 3, 5, 32, 16, [1, 17, 70], capacity=80)  # heads not a power of 2
        check(device, dtype, 2, 16, 16, 16, [0, 9], capacity=12)  # an empty row
        if device == "cuda":
            check(device, dtype, 4, 8, 256, 32, [1000, 4096, 3, 2500], capacity=4100)
            check(device, dtype, 64, 8, 256, 32, [130] * 64, capacity=200)
        for down_rate in (1, 2, 3):
            check_update(device, dtype, down_rate)
        for down_rate in (2, 4):
            check_merge_update(device, dtype, down_rate)
        if device == "cuda":
            check_merge_update(device, dtype, 2, rank=512)  # the paper's latent
        check_reorder(device, dtype, 7, 5, 48)  # a row of 240 elements: one partial block
        check_reorder(device, dtype, 12, 101, 288, seed=1)  # the paper's latent entries
        check_reorder(device, dtype, 9, 40, 64, seed=2, one_count=True)  # KVCache keys
        check_reorder(device, dtype, 12, 30, 48, seed=4, strided_index=True)
        # shared prefix: groups of 3 beams x 5 heads, a group with no shared entry, own
        # parts of different lengths; 10 beams x 8 heads (80 heads of one program)
        check_shared(device, dtype, 2, 3, 5, 32, 16, [1, 4, 2, 1, 1, 7], [40, 0])
        check_shared(device, dtype, 2, 10, 8, 16, 16, [3] * 20, [70, 33])
        if device == "cuda":
            check_shared(device, dtype, 4, 10, 8, 256, 32, [5] * 40, [300, 2000, 77, 1])
    check_reorder(device, torch.bool, 9, 1500, 0, seed=3, one_count=True)  # its padding
    print("kernel checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
