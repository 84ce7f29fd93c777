#!/usr/bin/env python3
"""Time of MTLA's decoding-step cache update with the merge weight, on CUDA.

    PYTHONPATH=. python bench/merge_update_speed.py [--batches 16 32 256]

Each way of merging one token per row into a ``LatentCache`` (r 512, rope 32, s 2, bf16)
is captured 20 times in one CUDA graph (as generate() and the beam search replay their
steps) and replayed; the table gives microseconds per update:
``mla``: the update kernel alone (no merge weight: MLA's step, the floor);
``pytorch_weight``: the hyper-network in PyTorch, then the update kernel (until
2026-12-01); ``fused``: ``LatentCache.add_step`` with the hyper-network given, the
weight's partial scores over (row, block) programs, then the update kernel (now).
"""

import argparse

import torch

from espnet2_mtla.attention.cache import LatentCache
from espnet2_mtla.attention.mtla import MergeHyperNetwork
from espnet2_mtla.kernels import latent_update


def per_call_us(update, calls=20, replays=50) -> float:
    """Microseconds per call of ``update()`` replayed from a CUDA graph of ``calls``."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            update()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            update()
    graph.replay()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    stop.record()
    torch.cuda.synchronize()
    return 1e3 * start.elapsed_time(stop) / (calls * replays)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 256])
    args = parser.parse_args()
    rank, rope, down_rate, dtype = 512, 32, 2, torch.bfloat16
    torch.manual_seed(0)
    merge = MergeHyperNetwork(rank, down_rate)
    torch.nn.init.normal_(merge.fc_p.weight, std=0.05)
    merge = merge.to("cuda", dtype)
    print(f"{torch.cuda.get_device_name()}, bf16, r {rank}, rope {rope}, s {down_rate}: "
          "microseconds per update (CUDA graph of 20 updates)")
    print("| batch | mla | pytorch_weight | fused |")
    print("|---|---|---|---|")
    for batch in args.batches:
        cache = LatentCache(batch, rank, rope, down_rate, "cuda", dtype, capacity=4096)
        latent = torch.randn(batch, rank, device="cuda", dtype=dtype)
        key = torch.randn(batch, rope, device="cuda", dtype=dtype)
        positions = torch.full((batch,), 4001, device="cuda")
        add = latent_update.latent_add_step

        def pytorch_weight():
            weighted = latent * merge(latent[:, None], positions[:, None])[:, 0]
            add(cache, weighted, key, positions)

        with torch.no_grad():
            times = [per_call_us(lambda: add(cache, latent, key, positions)),
                     per_call_us(pytorch_weight),
                     per_call_us(lambda: add(cache, latent, key, positions, merge))]
        print(f"| {batch} | " + " | ".join(f"{t:.1f}" for t in times) + " |")


if __name__ == "__main__":
    main()
