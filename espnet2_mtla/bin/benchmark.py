#!/usr/bin/env python3
"""Speed and memory of the attention family, side by side in one run.

    python -m espnet2_mtla.bin.benchmark --out bench_out            # paper sizes, GPU
    python -m espnet2_mtla.bin.benchmark --tiny --out /tmp/bench    # smoke run, CPU

Sections (``--sections``):
- ``copy``: device-to-device copy bandwidth (bytes read + written), the ceiling.
- ``decode``: one decode step of one attention layer against a cache of L tokens, for
  batch x L; time per step and achieved bandwidth = cache bytes read / time. Cache
  bytes per token and layer (fp16/bf16): MHA 2048, MQA 256, GQA(G) 512G... MLA 576,
  MTLA 576/s.
- ``beam``: batched beam search of a decoder-only model at the paper's size (9 decoder
  layers over a 12-layer speech encoder, d_model 512, 8 heads, FFN 2048) with random
  weights and a fixed output length (``--eos_terminated``: utterances end at seeded
  random lengths, so the batch shrinks as in real decoding): wall time, peak GPU memory
  and the time spent capturing CUDA graphs; each run starts from an emptied allocator
  cache. Baselines:
  ``mha_paper`` (fairseq-style: cache grown by concatenation, attention as bmm +
  softmax, every cache reordered by index_select each step) and ``mha`` (ours:
  preallocated cache, fused SDPA), plus the reference ``mtla`` package's MTLA.
- ``prefill``: an inference prefill of one latent layer into its cache per B x T prompt
  (``--prefill_shapes``): time, peak memory and the cache's MB; ``--compare_chunks`` adds
  the stride-aware mask built for the whole prompt at once.
- ``generate``: Transformers' generate() with long prompts (``--generate_shapes``,
  ``--new_tokens``): Llama with its default cache, Llama with a static cache (compiled by
  generate()), LlamaMTLA s = 1, 2, 4; time, peak memory and the cache-bytes bound beside
  the ratio to Llama (``espnet2_mtla.benchmark.generation``). Not in the default sections.
- ``train``: one training step (forward + backward) of the decoder stack per B x T shape
  (``--train_shapes``; MTLA through FlexAttention with the stride-aware mask on CUDA
  for rows of FLEX_MIN_LENGTH tokens or more, the dense mask below),
  with the ratio to MHA's step at the same shape beside the arithmetic bound (the step's
  FLOPs relative to MHA's).

Beam search replays each decoding step from CUDA graphs where the caches allow it (ours;
not the paper-style MHA nor the reference package, whose caches grow by concatenation).

Every row is printed, and written to ``<out>/<section>.csv``; ``--plot`` draws PNGs
from the CSVs (needs matplotlib; can be run later on another machine). The variants are
the repository's ``conf/attention/*.yaml``; the work is in ``espnet2_mtla.benchmark``.
"""

import argparse
from pathlib import Path

import torch

from espnet2_mtla.benchmark.report import Report, plot
from espnet2_mtla.benchmark.generation import SUBJECTS
from espnet2_mtla.benchmark.sections import SECTIONS, Bench
from espnet2_mtla.benchmark.variants import (ATTENTION_CONFS, VARIANTS, at_size, latent_sizes,
                                             sizes)


def batch_by_tokens(text: str):
    """'32x512' -> (32, 512)."""
    try:
        batch, tokens = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected B x T such as 32x512, got {text!r}")
    if batch < 1 or tokens < 1:
        raise argparse.ArgumentTypeError(f"B and T must be >= 1, got {text!r}")
    return batch, tokens


# the work of each section: the paper's shapes by default, tiny ones under --tiny; an
# option given on the command line wins over both
FULL_RUN = dict(batches=[1, 16, 64], lengths=[1024, 4096, 16384, 65536], beams=[5, 10],
                utterances=64, prefix_len=300, output_len=100,
                train_shapes=[(32, 512), (16, 1024), (8, 2048), (4, 4096), (1, 16384)],
                repeats=20, kernel_entries=[8192, 32768], copy_mb=2048,
                prefill_shapes=[(32, 1024), (16, 8000), (4, 32000)],
                generate_shapes=[(32, 1024), (16, 8000), (4, 32000)], new_tokens=128)
SMOKE_RUN = dict(batches=[1, 2], lengths=[16, 40], beams=[2], utterances=2, prefix_len=8,
                 output_len=3, train_shapes=[(2, 16)], repeats=2, kernel_entries=[64],
                 copy_mb=4, prefill_shapes=[(2, 20)], generate_shapes=[(2, 12)], new_tokens=4)


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_out")
    parser.add_argument("--sections", nargs="+",
                        default=["copy", "decode", "kernel", "beam", "train", "prefill"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                        help=f"of {ATTENTION_CONFS} (the recipes' sweep)")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a CPU smoke run")
    parser.add_argument("--reference", action="store_true",
                        help="also run the reference mtla package's MTLA (if installed)")
    parser.add_argument("--plot", action="store_true", help="only draw PNGs from <out>/*.csv")
    parser.add_argument("--compare_kernels", action="store_true",
                        help="beam: also run MLA/MTLA with the Triton kernels off; train: "
                        "also run MTLA on the dense-mask SDPA path")
    parser.add_argument("--encode_each", action="store_true",
                        help="beam: encode the prefixes one utterance at a time (as the "
                        "inference CLI does) instead of in one batch")
    parser.add_argument("--compare_graphs", action="store_true",
                        help="beam: run our variants both with and without CUDA graphs")
    parser.add_argument("--compare_shared_prefix", action="store_true",
                        help="beam: also run our variants with each utterance's prefix held once "
                        "for its beams (BatchBeamSearch share_prefix)")
    parser.add_argument("--batches", type=int, nargs="+")
    parser.add_argument("--lengths", type=int, nargs="+")
    parser.add_argument("--max_cache_gb", type=float, default=20.0)
    parser.add_argument("--beams", type=int, nargs="+")
    parser.add_argument("--utterances", type=int)
    parser.add_argument("--prefix_len", type=int)
    parser.add_argument("--output_len", type=int)
    parser.add_argument("--train_shapes", type=batch_by_tokens, nargs="+",
                        help="train: B x T of each step, e.g. 32x512")
    parser.add_argument("--train_compile", action="store_true",
                        help="train: also with the decoder layers compiled (decoder_conf "
                        "compile: true), each variant against compiled MHA")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--kernel_entries", type=int, nargs="+")
    parser.add_argument("--kernel_configs", type=lambda text: tuple(map(int, text.split(","))),
                        nargs="+", default=[(32, 4, 4)],
                        help="block_n,num_warps,num_stages of the latent decode kernel")
    parser.add_argument("--copy_mb", type=int)
    parser.add_argument("--prefill_shapes", type=batch_by_tokens, nargs="+",
                        help="B x T prompts of the prefill section, e.g. 16x8000")
    parser.add_argument("--generate_shapes", type=batch_by_tokens, nargs="+",
                        help="generate: B x prompt tokens, e.g. 16x8000")
    parser.add_argument("--new_tokens", type=int, help="generate: tokens generated per row")
    parser.add_argument("--generate_repeats", type=int, default=3,
                        help="generate: timed runs per subject after the warm-up (their median)")
    parser.add_argument("--prefill_chunk_size", type=int, nargs="+", default=[0],
                        help="generate: Transformers' prefill_chunk_size for every subject "
                        "(the prompt fed in chunks of this many tokens; 0: all at once); "
                        "several values: a row each")
    parser.add_argument("--generate_subjects", nargs="+", default=list(SUBJECTS),
                        choices=SUBJECTS, help="generate: Llama baselines and LlamaMTLA s")
    parser.add_argument("--eos_terminated", action="store_true",
                        help="beam: utterances end at seeded random lengths (output_len / 4 "
                        ".. output_len), so the batch shrinks and graphs are recaptured")
    parser.add_argument("--compare_chunks", action="store_true",
                        help="prefill: also with the whole prompt's mask at once")
    parser.epilog = "Defaults (without --tiny / with it): " + "; ".join(
        f"--{key} {FULL_RUN[key]} / {SMOKE_RUN[key]}" for key in FULL_RUN)
    return parser


def parse_args(argv=None):
    """The command line, with each section option not given taken from FULL_RUN, or
    from SMOKE_RUN under --tiny (a CPU smoke run that ends in seconds)."""
    args = get_parser().parse_args(argv)
    for key, value in (SMOKE_RUN if args.tiny else FULL_RUN).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.plot:
        plot(Path(args.out))
        return
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown:
        raise SystemExit(f"benchmark: unknown --sections {unknown}; choose from {list(SECTIONS)}")
    missing = [name for name in args.variants if name not in VARIANTS]
    if missing:
        raise SystemExit(f"benchmark: unknown --variants {missing}; {ATTENTION_CONFS} has "
                         f"{list(VARIANTS)}")
    size = sizes(args.tiny)
    bench = Bench(device=torch.device(args.device), dtype=getattr(torch, args.dtype),
                  size=size, variants=at_size(VARIANTS, args.tiny),
                  latent=latent_sizes(args.tiny), report=Report(args.out, args.sections))
    info = torch.cuda.get_device_name() if bench.device.type == "cuda" else "cpu"
    print(f"device {info}, torch {torch.__version__}, dtype {args.dtype}, sizes {size}")
    for name, run in SECTIONS.items():  # copy first: the others report against its bandwidth
        if name in args.sections:
            run(bench, args)


if __name__ == "__main__":
    main()
