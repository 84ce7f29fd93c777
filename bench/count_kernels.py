#!/usr/bin/env python3
"""How many kernels torch.compile (inductor) generates for one training step (forward +
backward) of the benchmark's decoder stack, per attention variant: with compiled layers
a step's host time grows with its kernel launches, so this counts what a latent
attention adds over MHA. GEMMs and attention calls (extern kernels) are not counted.

    python bench/count_kernels.py --variants mha mla mtla_s2 mtla_s4 --layers 2

Runs on the CPU (inductor's C++ kernels) or a GPU (Triton kernels): the counts differ
by backend but compare the variants on one. Prints a table and writes --csv if given.
"""

import argparse
import csv

import torch
from torch._inductor import metrics

from espnet2_mtla.benchmark.subjects import training_stack, training_step
from espnet2_mtla.benchmark.variants import VARIANTS


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["mha", "mla", "mtla_s2", "mtla_s4"])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--shape", default="2x64", help="B x T of the step")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--csv", default=None)
    args = parser.parse_args(argv)
    batch, length = (int(x) for x in args.shape.split("x"))
    device = torch.device(args.device)
    sizes = dict(d_model=256, heads=4, ffn=1024, encoder_layers=1,
                 decoder_layers=args.layers, vocab=1000)
    rows = []
    for variant in args.variants:
        attention, conf = VARIANTS[variant]
        torch._dynamo.reset()
        metrics.reset()
        model = training_stack(attention, dict(conf), sizes, device, torch.float32)
        training_step(model, batch, length, device, compiled=True)()  # compiles, counted
        rows.append(dict(variant=variant, layers=args.layers, device=device.type,
                         kernels=metrics.generated_kernel_count))
    base = rows[0]["kernels"]
    print(f"| variant | kernels generated, {args.layers} layers, forward + backward "
          f"({device.type}) | vs {rows[0]['variant']} |\n|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['kernels']} | {row['kernels'] / base:.2f}x |")
    if args.csv:
        with open(args.csv, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
