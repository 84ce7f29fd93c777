#!/usr/bin/env python3
"""Which kernel should run MLA's causal training attention: query-key heads of 96, value
heads of 64 (the benchmark stack: 8 heads, d_n 64 + d_r 32, d_v 64), forward + backward.

    PYTHONPATH=. python bench/mla_attention_kernels.py --out $OUT/mla_kernels \\
        [--shapes 32x512 16x1024 8x2048 4x4096 1x16384]

Columns (milliseconds per forward + backward of one layer's attention, medians; ratio to
MHA's flash kernel at width 64 in brackets):
``mha_flash``: MHA's q, k, v of 64 through SDPA's flash kernel (the reference);
``flash_padded``: MLA's values padded with zeros to 96, the flash kernel (before
2026-12-03), the pad and the slice included;
``efficient``, ``cudnn``: SDPA's memory-efficient and cuDNN kernels with values of 64
(``-`` where the backend refuses the shapes);
``flex``: compiled FlexAttention with values of 64 and the causal block mask
(``kernels/causal_flex.py``, the mask built once per shape, outside the timing).
The arithmetic bound beside them: (4 x 96 + 3 x 64) / (7 x 64) = 1.29 for fwd + bwd
(S = QK^T twice, dQ, dK over 96 columns; PV, dP, dV over 64) and 1.5 with the values
padded.
Writes <out>/kernels.csv.
"""

import argparse
import csv
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from espnet2_mtla.benchmark.timing import median_time
from espnet2_mtla.kernels.causal_flex import causal_block_mask, causal_flex_attention

HEADS, D_QK, D_V = 8, 96, 64


def step(attend, q, k, v, grad):
    """forward + backward of ``attend(q, k, v)`` -> (B, H, T, d_v)."""
    def run():
        out = attend(q, k, v)
        torch.autograd.backward(out, grad)
        q.grad = k.grad = v.grad = None
    return run


def sdpa(backend, pad: bool):
    def attend(q, k, v):
        width = v.shape[-1]
        if pad:
            v = F.pad(v, (0, q.shape[-1] - width))
        with sdpa_kernel(backend):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return out[..., :width]
    return attend


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+",
                        default=["32x512", "16x1024", "8x2048", "4x4096", "1x16384"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    args.out.mkdir(parents=True, exist_ok=True)
    dtype, device = torch.bfloat16, torch.device("cuda")
    columns = ["mha_flash", "flash_padded", "efficient", "cudnn", "flex"]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16, {HEADS} heads, "
          f"d_qk {D_QK}, d_v {D_V}: ms per forward + backward (ratio to mha_flash)")
    print("| B x T | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    rows = []
    for shape in args.shapes:
        batch, length = (int(x) for x in shape.split("x"))
        torch.manual_seed(0)
        torch._dynamo.reset()  # FlexAttention compiled for this shape (static), as a
        # graphed training step compiles it; without the reset the second shape on
        # recompiles with dynamic shapes (slower kernels)

        def tensor(width):
            return torch.randn(batch, HEADS, length, width, device=device, dtype=dtype,
                               requires_grad=True)

        q, k, v = tensor(D_QK), tensor(D_QK), tensor(D_V)
        grad = torch.randn(batch, HEADS, length, D_V, device=device, dtype=dtype)
        q64, k64 = tensor(D_V), tensor(D_V)
        mask = causal_block_mask(length, device)
        runs = {
            "mha_flash": step(sdpa(SDPBackend.FLASH_ATTENTION, False), q64, k64, v, grad),
            "flash_padded": step(sdpa(SDPBackend.FLASH_ATTENTION, True), q, k, v, grad),
            "efficient": step(sdpa(SDPBackend.EFFICIENT_ATTENTION, False), q, k, v, grad),
            "cudnn": step(sdpa(SDPBackend.CUDNN_ATTENTION, False), q, k, v, grad),
            "flex": step(lambda a, b, c: causal_flex_attention(a, b, c, D_QK ** -0.5, mask),
                         q, k, v, grad),
        }
        row = dict(shape=shape)
        for name, run in runs.items():
            try:
                row[name] = round(1e3 * median_time(run, device, repeats=args.repeats), 3)
            except (RuntimeError, torch.OutOfMemoryError) as error:
                print(f"{name} {shape}: {str(error).splitlines()[0][:160]}", flush=True)
                row[name] = ""
            torch.cuda.empty_cache()
        rows.append(row)
        base = row["mha_flash"]
        print(f"| {shape} | " + " | ".join(
            "-" if row[name] == "" else f"{row[name]:.2f} ({row[name] / base:.2f}x)"
            for name in columns) + " |", flush=True)
    with open(args.out / "kernels.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["shape"] + columns)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
