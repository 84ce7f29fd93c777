#!/usr/bin/env python3
"""What is live at the peak memory of the benchmark's generate(), on CUDA.

    PYTHONPATH=. python bench/profile_generate.py --subject mtla_s2 --shape 16x8000 \
        --prefill_chunk_size 2048

Builds the ``generate`` section's subject (random weights, bf16), runs generate() once
to warm up, then once more under the allocator's history and prints the memory held
before it (weights), the peak, and what is live at the peak grouped by the line of this
package that allocated it (``profile_beam.print_live_at_peak``). With ``--kernels`` it
first profiles the prefill alone (one new token) and prints the GPU kernels that take
most of its time.
"""

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from espnet2_mtla.benchmark.generation import LATENT, LLAMA, SUBJECTS, build_subject
from profile_beam import gpu_kernels, print_live_at_peak


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--subject", default="mtla_s2", choices=SUBJECTS)
    parser.add_argument("--shape", default="16x8000", help="batch x prompt length")
    parser.add_argument("--prefill_chunk_size", type=int, default=2048)
    parser.add_argument("--new_tokens", type=int, default=8)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--kernels", action="store_true",
                        help="also print the GPU kernels of the prefill alone")
    parser.add_argument("--decode_kernels", action="store_true",
                        help="also print the GPU kernels of a whole generate() (prefill "
                        "and decode steps; the per-step figure divides by new_tokens - 1)")
    args = parser.parse_args()
    batch, prompt = (int(n) for n in args.shape.split("x"))
    model, options = build_subject(args.subject, LLAMA, LATENT, "cuda", torch.bfloat16)
    ids = torch.randint(3, LLAMA["vocab_size"], (batch, prompt), device="cuda",
                        generator=torch.Generator("cuda").manual_seed(0))
    settings = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                    do_sample=False, eos_token_id=None, pad_token_id=0,
                    attention_mask=torch.ones_like(ids), **options)
    if args.prefill_chunk_size:  # (0: the prompt at once)
        settings["prefill_chunk_size"] = args.prefill_chunk_size
    print(f"{args.subject} {batch} x {prompt}, prefill chunk {args.prefill_chunk_size}, "
          f"{args.new_tokens} new tokens, {torch.cuda.get_device_name()}, bf16")
    with torch.no_grad():
        model.generate(ids, **settings)  # warm-up (graph capture, compilation)
        if args.kernels:
            prefill = {**settings, "max_new_tokens": 1, "min_new_tokens": 1}
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                model.generate(ids, **prefill)
                torch.cuda.synchronize()
            gpu_seconds, table = gpu_kernels(prof, args.rows)
            print(f"prefill: GPU kernels {gpu_seconds:.3f} s")
            print(table)
        if args.decode_kernels:
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                model.generate(ids, **settings)
                torch.cuda.synchronize()
            gpu_seconds, table = gpu_kernels(prof, args.rows)
            print(f"generate: GPU kernels {gpu_seconds:.3f} s, "
                  f"{1e3 * gpu_seconds / max(1, args.new_tokens - 1):.3f} ms per new token")
            print(table)
        print_live_at_peak(lambda: model.generate(ids, **settings), args.rows)


if __name__ == "__main__":
    main()
