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


def main(device):
    dtypes = [torch.float32, torch.float16] + ([torch.bfloat16] if device == "cuda" else [])
    for dtype in dtypes:
        check(device, dtype, 3, 5, 32, 16, [1, 17, 70], capacity=80)  # heads not a power of 2
        check(device, dtype, 2, 16, 16, 16, [0, 9], capacity=12)  # an empty row
        if device == "cuda":
            check(device, dtype, 4, 8, 256, 32, [1000, 4096, 3, 2500], capacity=4100)
            check(device, dtype, 64, 8, 256, 32, [130] * 64, capacity=200)
    print("kernel checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
