#!/usr/bin/env python3
"""Where a training step's time goes, per attention variant: forward + backward of the
benchmark's decoder stack (the paper-sized 9 x d 512 decoder, 8 heads, FFN 2048; MLA/MTLA
r 256, rope 32) on random tokens, batch B of T tokens, parameters in --dtype.

For each B x T shape it prints, side by side in one run: the median step time of every
variant, its ratio to MHA (compiled alike where the list has such an MHA, else eager),
and the arithmetic bound (the step's FLOPs relative to MHA's,
counted by torch.utils.flop_counter on the same step); then, per variant and shape, the
GPU time of one profiled step split into kinds of kernels (attention, GEMM, elementwise,
...) and its top kernels. A variant name with ":dense" runs MTLA's dense-mask SDPA path
(the kernels switch off), ":flex" the FlexAttention one at every length (the default
takes Flex from mtla.FLEX_MIN_LENGTH tokens on); ":compile" runs the stack through
torch.compile (the first step, not measured, compiles it), ":graphs" the same in
torch.compile's "reduce-overhead" mode (the compiled step replayed from CUDA graphs),
MTLA through Flex at every length as DecoderOnlyStack's graph modes take it.
``--host_top N`` also profiles one step's host side (its host time, aten calls, kernel
launches, allocations from the device, host syncs and the N costliest ops):
<out>/host_<variant>_<B>x<T>.txt.

    python bench/profile_train.py --shapes 32x512 16x1024 8x2048 4x4096 \
        --variants mha mla mtla_s2 mtla_s2:dense mtla_s4 --out $OUT/profile

Writes <out>/steps.csv, <out>/kinds.csv and <out>/top_<variant>_<B>x<T>.txt.
"""

import argparse
import csv
import re
import time
import warnings
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from espnet2_mtla.benchmark.subjects import training_stack, training_step
from espnet2_mtla.benchmark.timing import count_flops, median_time, peak_memory, reset_peak
from espnet2_mtla.benchmark.variants import PAPER_SIZES, VARIANTS
from espnet2_mtla.kernels import kernels_set
from espnet2_mtla.model.decoder import flex_at_every_length

# kinds of CUDA kernels, by name (first match wins)
KINDS = [
    ("attention", re.compile(r"flash|fmha|attention|attn|flex|sdpa|triton_tem", re.I)),
    ("gemm", re.compile(r"gemm|cutlass|sm90_xmma|cublas|nvjet|matmul|splitk", re.I)),
    ("softmax/norm", re.compile(r"softmax|norm", re.I)),
    ("reduce/scan", re.compile(r"reduce|scan|cumsum|sum_", re.I)),
    ("copy/cast", re.compile(r"copy|cast|cat|transpose|convert|index|gather|scatter", re.I)),
    ("elementwise", re.compile(r"elementwise|vectorized|unrolled|triton", re.I)),
]


def kind_of(name: str) -> str:
    for kind, pattern in KINDS:
        if pattern.search(name):
            return kind
    return "other"


def build(variant: str, sizes: dict, device, dtype):
    attention, conf = VARIANTS[variant.split(":")[0]]
    return training_stack(attention, conf, sizes, device, dtype)


def profile_step(step):
    """(kind -> ms, [(kernel name, ms)]) of one step's CUDA kernels."""
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    by_kernel = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            by_kernel[event.name] = by_kernel.get(event.name, 0.0) + event.device_time / 1e3
    kinds = {}
    for name, ms in by_kernel.items():
        kinds[kind_of(name)] = kinds.get(kind_of(name), 0.0) + ms
    return kinds, sorted(by_kernel.items(), key=lambda item: -item[1])


def profile_host(step):
    """Where the host's time goes in one step: (host ms of the step, [(op or CUDA runtime
    call, self host ms, calls)] longest first, allocations from the device (cudaMalloc
    by the caching allocator), host syncs (where they happen: the warnings of torch's
    sync debug mode)). Profiled, so slower than unprofiled: for comparing variants."""
    torch.cuda.synchronize()
    allocations = torch.cuda.memory_stats().get("num_device_alloc", 0)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as syncs:
            warnings.simplefilter("always")
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                begin = time.perf_counter()
                step()
                host_ms = (time.perf_counter() - begin) * 1e3
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    allocations = torch.cuda.memory_stats().get("num_device_alloc", 0) - allocations
    ops = [(event.key, event.self_cpu_time_total / 1e3, event.count)
           for event in prof.key_averages()]
    sync_sites = [f"{w.filename}:{w.lineno}" for w in syncs
                  if "synchroniz" in str(w.message).lower()]
    return host_ms, sorted(ops, key=lambda op: -op[1]), allocations, sync_sites


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["32x512", "16x1024", "8x2048", "4x4096"],
                        help="B x T of each step")
    parser.add_argument("--variants", nargs="+",
                        default=["mha", "mla", "mtla_s2", "mtla_s2:dense", "mtla_s4"])
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--top", type=int, default=12, help="kernels listed per profile")
    parser.add_argument("--host_top", type=int, default=0,
                        help="also profile one step's host side: its host time and the "
                        "ops / CUDA runtime calls with the most self host time, this many, "
                        "into <out>/host_<variant>_<B>x<T>.txt")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keep_compiled", action="store_true",
                        help="do not reset torch.compile's caches between compiled runs (as "
                        "a training run meets new shapes: the code recompiles with dynamic "
                        "shapes); by default each compiled run starts afresh, so that one "
                        "variant's compilations do not exhaust another's recompile limit")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    device, dtype = torch.device("cuda"), getattr(torch, args.dtype)
    sizes = PAPER_SIZES
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.dtype}, "
          f"decoder {sizes['decoder_layers']} x d {sizes['d_model']}, {sizes['heads']} heads, "
          f"FFN {sizes['ffn']}, vocabulary {sizes['vocab']}", flush=True)
    steps, kinds_rows = [], []
    for shape in args.shapes:
        batch, length = (int(x) for x in shape.split("x"))
        bases = {}  # compile setting -> MHA's (ms, flops): each ratio is to MHA run alike
        for variant in args.variants:
            options = variant.split(":")[1:]
            compiled = "reduce-overhead" if "graphs" in options else "compile" in options
            if compiled and not args.keep_compiled:
                torch._dynamo.reset()
            model = build(variant, sizes, device, dtype)
            if "flex" in options or "graphs" in options:  # (graphs: as the stack's graph
                flex_at_every_length(model)  # modes take it)
            step = training_step(model, batch, length, device, compiled)
            try:
                flops = count_flops(training_step(model, batch, length, device))
                with kernels_set("dense" not in options):  # dense: the kernels off
                    step()  # compiles (FlexAttention) outside the measurement
                    reset_peak(device)
                    seconds = median_time(step, device, repeats=args.repeats, warmup=2)
                    memory = peak_memory(device) / 1e6
                    kinds, top = profile_step(step)
                    host = profile_host(step) if args.host_top else None
            except torch.OutOfMemoryError:
                print(f"{variant} {shape}: out of memory", flush=True)
                model = step = None
                torch.cuda.empty_cache()
                continue
            ms = seconds * 1e3
            if variant.split(":")[0] == "mha":
                bases[compiled] = (ms, flops)
            base_ms, base_flops = bases.get(compiled, bases.get(False, (None, None)))
            row = dict(shape=shape, variant=variant, ms_per_step=round(ms, 2),
                       ratio_to_mha=round(ms / base_ms, 2) if base_ms else "",
                       flops_ratio_to_mha=round(flops / base_flops, 2) if base_flops else "",
                       tflops_per_s=round(flops / seconds / 1e12, 1),
                       peak_memory_MB=round(memory))
            steps.append(row)
            print("[step] " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            total = sum(kinds.values())
            kinds_rows.append(dict(shape=shape, variant=variant, gpu_ms=round(total, 2),
                                   **{k: round(v, 2) for k, v in sorted(kinds.items())}))
            print(f"[kinds] {variant} {shape}: GPU {total:.1f} ms = " + ", ".join(
                f"{k} {v:.1f}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])),
                flush=True)
            with open(args.out / f"top_{variant.replace(':', '_')}_{shape}.txt", "w") as stream:
                for name, kernel_ms in top[:args.top]:
                    stream.write(f"{kernel_ms:9.2f} ms  {kind_of(name):12s} {name[:160]}\n")
            if host is not None:
                host_ms, ops, allocations, sync_sites = host
                calls = {name: count for name, _, count in ops}
                print(f"[host] {variant} {shape}: {host_ms:.1f} ms on the host (profiled), "
                      f"{sum(n for name, n in calls.items() if name.startswith('aten::'))} "
                      f"aten calls, {calls.get('cudaLaunchKernel', 0)} cudaLaunchKernel, "
                      f"{allocations} cudaMalloc, {len(sync_sites)} host syncs", flush=True)
                with open(args.out / f"host_{variant.replace(':', '_')}_{shape}.txt",
                          "w") as stream:
                    stream.write(f"host {host_ms:.2f} ms (profiled step), {allocations} "
                                 f"allocations from the device, {len(sync_sites)} syncs\n")
                    for site in dict.fromkeys(sync_sites):
                        stream.write(f"sync at {site} ({sync_sites.count(site)}x)\n")
                    for name, self_ms, count in ops[:args.host_top]:
                        stream.write(f"{self_ms:9.2f} ms {count:7d}x  {name[:120]}\n")
            del model, step
            torch.cuda.empty_cache()
    for name, rows in (("steps", steps), ("kinds", kinds_rows)):
        if rows:
            fields = list(dict.fromkeys(k for row in rows for k in row))
            with open(args.out / f"{name}.csv", "w", newline="") as stream:
                writer = csv.DictWriter(stream, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
    print("\n| B x T | " + " | ".join(args.variants) + " |")
    print("|---|" + "---|" * len(args.variants))
    for shape in args.shapes:
        cells = []
        for variant in args.variants:
            row = next((r for r in steps if r["shape"] == shape and r["variant"] == variant), None)
            cells.append("OOM" if row is None else
                         f"{row['ms_per_step']} ms ({row['ratio_to_mha']}x; "
                         f"bound {row['flops_ratio_to_mha']}x)")
        print(f"| {shape} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
