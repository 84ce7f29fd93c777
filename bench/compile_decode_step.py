#!/usr/bin/env python3
"""Experiment (#22 part 6): ``torch.compile(mode="reduce-overhead")`` around the decode
step, as gpt-fast does, against the hand-captured CUDA graphs of
``espnet2_mtla.inference.cuda_graph`` and the eager step, in the benchmark's beam search
(random-weight paper-sized model, fixed output length).

    python bench/compile_decode_step.py --variants mha mtla_s2 --out /tmp/compile

Each setting runs the search twice on the same batch (the first run pays compilation
and capture) and reports both times, peak memory, the graphs dynamo compiled,
and whether the hypotheses equal the eager ones. Rows go to stdout and
``<out>/compile.csv``.
"""

import argparse
import time

import torch

from espnet2_mtla.benchmark.report import Report
from espnet2_mtla.benchmark.subjects import BenchModel, FixedLengthBeamSearch
from espnet2_mtla.benchmark.timing import peak_memory, reset_peak, synchronize
from espnet2_mtla.benchmark.variants import VARIANTS, at_size, sizes
from espnet2_mtla.inference import beam_search
from espnet2_mtla.inference.cuda_graph import DecodeStep


class CompiledDecodeStep(DecodeStep):
    """The eager step on static caches (in-place writes, reorders in place through a spare:
    what the hand capture replays), compiled by torch.compile with ``mode``."""

    mode = "reduce-overhead"

    def __init__(self, model, caches):
        super().__init__(model, caches)
        self.spares = {}
        for cache in caches:
            cache.set_static(True, self.spares)
        eager = DecodeStep.__call__
        self.compiled = torch.compile(lambda source, tokens: eager(self, source, tokens),
                                      mode=self.mode)

    def __call__(self, source, tokens):
        return self.compiled(source, tokens).clone()


def run(model, batch, beam, output_len, setting):
    """(first seconds, second seconds, peak bytes, token lists) of one setting."""
    graphs = setting == "graphs"
    original = beam_search.DecodeStep
    if setting.startswith("compile"):
        CompiledDecodeStep.mode = setting.split(":")[1]
        beam_search.DecodeStep = CompiledDecodeStep
    try:
        times = []
        for _ in range(2):
            search = FixedLengthBeamSearch(model, beam, output_len, cuda_graphs=graphs)
            reset_peak(batch["speech"].device)
            synchronize(batch["speech"].device)
            begin = time.perf_counter()
            with torch.no_grad():
                results, stats = search.search(batch)
            synchronize(batch["speech"].device)
            times.append(time.perf_counter() - begin)
    finally:
        beam_search.DecodeStep = original
    tokens = [[hyp.tokens for hyp in nbest] for nbest in results]
    return times, peak_memory(batch["speech"].device), tokens


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["mha", "mtla_s2"])
    parser.add_argument("--settings", nargs="+",
                        default=["eager", "graphs", "compile:reduce-overhead"])
    parser.add_argument("--utterances", type=int, default=64)
    parser.add_argument("--prefix_len", type=int, default=300)
    parser.add_argument("--output_len", type=int, default=100)
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (a CPU smoke run)")
    parser.add_argument("--out", default="compile_out")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype)
    size, variants = sizes(args.tiny), at_size(VARIANTS, args.tiny)
    report = Report(args.out, ["compile"])
    info = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device {info}, torch {torch.__version__}, dtype {args.dtype}, sizes {size}")
    for variant in args.variants:
        attention, conf = variants[variant]
        torch.manual_seed(0)
        model = BenchModel(attention, conf, size, size["vocab"]).to(device, dtype).eval()
        batch = {"speech": torch.randn(args.utterances, args.prefix_len, 80, device=device,
                                       dtype=dtype),
                 "speech_lengths": torch.full((args.utterances,), args.prefix_len,
                                              device=device)}
        reference = None
        for setting in args.settings:
            torch._dynamo.reset()
            torch._dynamo.utils.counters.clear()
            try:
                times, peak, tokens = run(model, batch, args.beam, args.output_len, setting)
            except Exception as error:  # an experiment: a failing setting is a finding
                print(f"[compile] variant={variant} setting={setting} failed: "
                      f"{type(error).__name__}: {str(error)[:300]}", flush=True)
                continue
            reference = tokens if reference is None else reference
            report.row("compile", dict(
                variant=variant, setting=setting, beam=args.beam, utterances=args.utterances,
                output_len=args.output_len, first_s=times[0], second_s=times[1],
                peak_memory_MB=peak / 1e6,
                graphs_compiled=torch._dynamo.utils.counters["stats"].get("unique_graphs", 0),
                graph_breaks=sum(torch._dynamo.utils.counters["graph_break"].values()),
                same_tokens=tokens == reference))
        del model


if __name__ == "__main__":
    main()
