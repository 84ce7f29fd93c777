#!/usr/bin/env python3
"""Where the time of one benchmark beam search goes (GPU kernels vs host), on CUDA.

    PYTHONPATH=. python bench/profile_beam.py --variant mtla_s2 --beam 10 \
        --utterances 128 --output_len 200

Runs the benchmark's beam-search configuration once to warm up, then once under
torch.profiler, and prints the wall time, the summed GPU kernel time and the kernels
that take most of it. GPU time far below wall time means the host bounds the search.
With ``--memory`` it records the allocator's history over one more search and prints
what is live at its peak, grouped by the line of this package that allocated it.
"""

import argparse
import collections
import time

import torch
from torch.profiler import ProfilerActivity, profile

from espnet2_mtla.benchmark.subjects import BenchModel, FixedLengthBeamSearch
from espnet2_mtla.benchmark.variants import PAPER_SIZES, VARIANTS


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", default="mtla_s2", choices=list(VARIANTS) + ["mha_paper"])
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--utterances", type=int, default=128)
    parser.add_argument("--prefix_len", type=int, default=300)
    parser.add_argument("--output_len", type=int, default=200)
    parser.add_argument("--cuda_graphs", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--memory", action="store_true",
                        help="also print what is live at the search's peak memory")
    args = parser.parse_args()
    attention, conf = ("mha_paper", {}) if args.variant == "mha_paper" else VARIANTS[args.variant]
    torch.manual_seed(0)
    model = BenchModel(attention, conf, PAPER_SIZES, PAPER_SIZES["vocab"])
    model = model.cuda().to(torch.bfloat16).eval()
    batch = {
        "speech": torch.randn(args.utterances, args.prefix_len, 80, device="cuda",
                              dtype=torch.bfloat16),
        "speech_lengths": torch.full((args.utterances,), args.prefix_len, device="cuda"),
    }
    graphs = {"auto": None, "true": True, "false": False}[args.cuda_graphs]
    search = FixedLengthBeamSearch(model, args.beam, args.output_len, graphs)
    with torch.no_grad():
        search.search(batch)  # warm-up
        torch.cuda.synchronize()
        begin = time.perf_counter()
        search.search(batch)
        torch.cuda.synchronize()
        wall = time.perf_counter() - begin
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            _, stats = search.search(batch)
            torch.cuda.synchronize()
    gpu_seconds, table = gpu_kernels(prof, args.rows)
    print(f"{args.variant} beam {args.beam}: wall {wall:.3f} s (unprofiled), "
          f"GPU kernels {gpu_seconds:.3f} s, steps {stats.steps}, "
          f"graph replays {stats.graph_replays}")
    print(table)
    if args.memory:
        with torch.no_grad():
            print_live_at_peak(lambda: search.search(batch), args.rows)


def gpu_kernels(prof, rows):
    """(seconds of GPU kernels in all, the table of the ``rows`` longest) of a profile."""
    events = prof.key_averages()
    seconds = sum(event.self_device_time_total for event in events) / 1e6
    return seconds, events.table(sort_by="self_device_time_total", row_limit=rows)


def allocation_site(frames):
    """The innermost frame of this package (file:line function) that led to an allocation."""
    for frame in frames:
        if "espnet2_mtla" in frame["filename"]:
            name = frame["filename"].split("espnet2_mtla/")[-1]
            return f"{name}:{frame['line']} {frame['name']}"
    return "(outside espnet2_mtla)"


def print_live_at_peak(run, rows):
    """Replays the allocator's trace of ``run()``: the memory allocated before it (weights,
    inputs) plus, at the moment the sum peaks, every live block grouped by allocation site."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.memory._record_memory_history(max_entries=2_000_000)
    run()
    torch.cuda.synchronize()
    snapshot = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    live, current, peak, at_peak = {}, 0, 0, {}
    for event in snapshot["device_traces"][torch.cuda.current_device()]:
        if event["action"] == "alloc":
            live[event["addr"]] = (event["size"], allocation_site(event["frames"]))
            current += event["size"]
        elif event["action"] == "free_completed" and event["addr"] in live:
            current -= live.pop(event["addr"])[0]
        if current > peak:
            peak, at_peak = current, dict(live)
    sites = collections.Counter()
    for size, site in at_peak.values():
        sites[site] += size
    print(f"memory: {before / 1e6:.1f} MB allocated before the search, "
          f"{peak / 1e6:.1f} MB more at its peak (trace), "
          f"{torch.cuda.max_memory_allocated() / 1e6:.1f} MB peak (allocator)")
    for site, size in sites.most_common(rows):
        print(f"  {size / 1e6:9.1f} MB  {site}")


if __name__ == "__main__":
    main()
