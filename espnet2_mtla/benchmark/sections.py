"""The benchmark's sections. Each takes the run's ``Bench`` (device, dtype, sizes,
variants, report) and the command-line options, and writes its rows to the report."""

import itertools
import math
import time
from dataclasses import dataclass

import torch

from espnet2_mtla.attention import build_attention
from espnet2_mtla.benchmark.generation import bench_generate
from espnet2_mtla.benchmark.report import Report
from espnet2_mtla.benchmark.subjects import (BenchModel, FixedLengthBeamSearch, bytes_per_token,
                                             decode_subject, restore, snapshot,
                                             training_stack, training_step)
from espnet2_mtla.benchmark.timing import (allocated_memory, count_flops, fresh_memory,
                                           graph_replay_time, median_time, peak_memory,
                                           reset_peak, synchronize)
from espnet2_mtla.benchmark.variants import Variants
from espnet2_mtla.kernels import kernels_set


@dataclass
class Bench:
    """What every section of one run shares."""

    device: torch.device
    dtype: torch.dtype
    size: dict  # d_model, heads, ffn, encoder_layers, decoder_layers, vocab
    variants: Variants  # name -> (attention, attention_conf), at this run's sizes
    latent: dict  # the latent sizes (of the reference package's MTLA)
    report: Report
    copy_bandwidth: float = float("nan")  # bytes/s, once the copy section has run


def bench_copy(bench: Bench, options):
    """Device-to-device copy bandwidth (bytes read + written): the ceiling."""
    numel = options.copy_mb * 2**20 // 2
    source = torch.randn(numel, device=bench.device, dtype=torch.float16)
    target = torch.empty_like(source)
    seconds = median_time(lambda: target.copy_(source), bench.device)
    bandwidth = 2 * source.numel() * source.element_size() / seconds
    bench.copy_bandwidth = bandwidth
    bench.report.row("copy", {"bytes": 2 * source.numel() * 2, "seconds": seconds,
                              "GB_per_s": bandwidth / 1e9})


def bench_decode(bench: Bench, options):
    """One decode step of one attention layer against a cache of L tokens, batch x L."""
    device, dtype = bench.device, bench.dtype
    variants = ["mha_paper"] + list(options.variants)
    if options.reference:
        variants.append("reference_mtla_s2")
    for variant in variants:
        try:
            module, make_cache = decode_subject(variant, bench.variants, bench.size,
                                                bench.latent, device, dtype)
        except ImportError as error:
            print(f"skip {variant}: {error}")
            continue
        per_token = bytes_per_token(make_cache)
        for batch in options.batches:
            for length in options.lengths:
                if batch * length * per_token > options.max_cache_gb * 1e9:
                    continue
                cache = make_cache(batch, length)
                cache_bytes = cache.nbytes()
                x = torch.randn(batch, 1, bench.size["d_model"], device=device, dtype=dtype)
                saved = snapshot(cache)

                def step():
                    restore(cache, saved)
                    module(x, cache=cache)

                with torch.no_grad():
                    seconds = median_time(step, device, repeats=options.repeats)
                    replay = float("nan")
                    if not variant.startswith("reference"):  # it syncs: no graph capture
                        replay = graph_replay_time(lambda: module(x, cache=cache),
                                                   lambda: restore(cache, saved), device,
                                                   repeats=options.repeats)
                bench.report.row("decode", dict(
                    variant=variant, dtype=str(dtype)[6:], batch=batch, cache_len=length,
                    cache_MB=cache_bytes / 1e6, us_per_step=seconds * 1e6,
                    graph_us_per_step=replay * 1e6, graph_GB_per_s=cache_bytes / replay / 1e9,
                    graph_of_copy_bw=cache_bytes / replay / bench.copy_bandwidth))
                cache = saved = None  # freed before the next cache is made


def bench_kernel(bench: Bench, options):
    """The latent decode kernel alone (no projections), over tile and launch settings."""
    from espnet2_mtla.kernels.latent_decode import latent_attention_decode

    device, dtype = bench.device, bench.dtype
    rank, rope = bench.latent["kv_lora_rank"], bench.latent["qk_rope_head_dim"]
    for batch in options.batches:
        for entries_count in options.kernel_entries:
            entries = torch.randn(batch, entries_count + 1, rank + rope, device=device,
                                  dtype=dtype)
            lengths = torch.full((batch,), entries_count, device=device)
            query = torch.randn(batch, bench.size["heads"], rank + rope, device=device,
                                dtype=dtype)
            cache_bytes = batch * entries_count * (rank + rope) * entries.element_size()
            for block_n, warps, stages in options.kernel_configs:
                def run():
                    latent_attention_decode(query, entries, lengths, rank, 0.1,
                                            entries_count, block_n, warps, stages)
                try:
                    run()  # compile outside the graph
                except Exception as error:  # e.g. out of shared memory for this tile
                    print(f"  (config {block_n},{warps},{stages}: {type(error).__name__})")
                    continue
                seconds = graph_replay_time(run, lambda: None, device, options.repeats)
                if math.isnan(seconds):
                    seconds = median_time(run, device, repeats=options.repeats)
                bench.report.row("kernel", dict(
                    batch=batch, entries=entries_count, block_n=block_n, num_warps=warps,
                    num_stages=stages, us=seconds * 1e6, GB_per_s=cache_bytes / seconds / 1e9,
                    of_copy_bw=cache_bytes / seconds / bench.copy_bandwidth))
            entries = None  # freed before the next


def bench_beam(bench: Bench, options):
    """Batched beam search of the random-weight model: wall time and peak memory."""
    device = bench.device
    runs = [(variant, bench.dtype) for variant in ["mha_paper"] + list(options.variants)]
    if options.reference:  # its prefill only runs in fp32: compare with ours in fp32 too
        fp32 = torch.float32
        runs += [("mha_paper", fp32), ("mtla_s2", fp32), ("reference_mtla_s2", fp32)]
    for variant, dtype in runs:
        if variant == "mha_paper":
            attention, conf = "mha_paper", {}
        elif variant == "reference_mtla_s2":
            attention, conf = "reference_mtla", {**bench.latent, "down_rate": 2}
        else:
            attention, conf = bench.variants[variant]
        for beam in options.beams:
            latent = variant.startswith(("mla", "mtla"))
            # (kernels, cuda_graphs, prefix shared by the beams; None: the search's default)
            settings = [(True, None, None)]
            if options.compare_graphs and variant in bench.variants:
                settings = [(True, True, False), (True, False, False)]
            if latent and options.compare_kernels:
                settings.append((False, None, False))
            if options.compare_shared_prefix and variant in bench.variants:
                settings.append((True, None, True))
            for kernels_on, graphs, shared in settings:
                with kernels_set(kernels_on):
                    torch.manual_seed(0)
                    try:
                        model = BenchModel(attention, conf, bench.size, bench.size["vocab"])
                    except ImportError as error:
                        print(f"skip {variant}: {error}")
                        break
                    model = model.to(device, dtype).eval()
                    batch = {
                        "speech": torch.randn(options.utterances, options.prefix_len, 80,
                                              device=device, dtype=dtype),
                        "speech_lengths": torch.full((options.utterances,), options.prefix_len,
                                                     device=device),
                    }
                    search = FixedLengthBeamSearch(
                        model, beam, options.output_len, graphs,
                        encode_batched=not options.encode_each,
                        eos_seed=0 if options.eos_terminated else None, share_prefix=shared)
                    with torch.no_grad():
                        # warm-up on the whole batch: Triton specialises kernels on
                        # integer arguments (== 1, multiples of 16), so a one-utterance
                        # warm-up can leave compilations to the timed search (the likely
                        # cause of the first shared-prefix MLA search's 1.46 s against
                        # 0.48 s unshared in bench/results/h200x2_2026-11-30_s17)
                        search.search(batch)
                        fresh_memory(device)  # no variant inherits another's cached blocks
                        reset_peak(device)
                        at_start = allocated_memory(device)
                        synchronize(device)
                        begin = time.perf_counter()
                        _, stats = search.search(batch)
                        synchronize(device)
                    seconds = time.perf_counter() - begin
                bench.report.row("beam", dict(
                    variant=variant, dtype=str(dtype)[6:], kernels=kernels_on,
                    cuda_graphs=stats.graph_replays > 0, shared_prefix=stats.shared_prefix,
                    beam=beam,
                    utterances=options.utterances, output_len=options.output_len,
                    eos_terminated=options.eos_terminated, tokens=stats.generated_tokens,
                    seconds=seconds, capture_s=stats.capture_seconds,
                    graph_captures=stats.graph_captures,
                    peak_memory_MB=peak_memory(device) / 1e6,
                    allocated_at_start_MB=at_start / 1e6,
                    peak_cache_MB=stats.peak_cache_bytes / 1e6))
                del model, search
                fresh_memory(device)


def bench_train(bench: Bench, options):
    """One training step (forward + backward) of the decoder stack per B x T shape, each
    variant's time beside MHA's of the same shape and its arithmetic bound (its FLOPs
    relative to MHA's, counted on the same step)."""
    device = bench.device
    names = sorted(options.variants, key=lambda name: name != "mha")  # MHA first: the base
    # eager, and with --train_compile the layers compiled (decoder_conf compile), each
    # variant against MHA of the same setting
    compile_settings = [False, True] if options.train_compile else [False]
    for (batch, length), compiled in itertools.product(options.train_shapes, compile_settings):
        base_ms = base_flops = None
        for variant in names:
            attention, conf = bench.variants[variant]
            # MTLA's own training path (FlexAttention from FLEX_MIN_LENGTH tokens on) and,
            # to compare, the dense-mask SDPA one
            kernel_settings = [True]
            if variant.startswith("mtla") and options.compare_kernels:
                kernel_settings.append(False)
            flops = None  # the same arithmetic on either path: counted once per variant
            for kernels_on in kernel_settings:
                model = training_stack(attention, conf, bench.size, device, bench.dtype,
                                       compile=compiled)
                step = training_step(model, batch, length, device)
                if flops is None:  # (a compiled stack's counted on an eager one: the same
                    counted = step  # arithmetic, and the counter does not see into compile)
                    if compiled:
                        counted = training_step(training_stack(
                            attention, conf, bench.size, device, bench.dtype), batch, length,
                            device)
                    try:  # (the dense path materialises T x T scores: it may not fit at 16k)
                        flops = count_flops(counted)
                    except torch.OutOfMemoryError:
                        flops = float("nan")
                        torch.cuda.empty_cache()
                    counted = None
                try:
                    with kernels_set(kernels_on):
                        step()  # compiles (FlexAttention, compiled layers) unmeasured
                        reset_peak(device)
                        seconds = median_time(step, device, repeats=options.repeats // 4 + 1,
                                              warmup=1)
                        memory = peak_memory(device)
                except torch.OutOfMemoryError:
                    seconds = memory = float("nan")
                ms = seconds * 1e3
                if variant == "mha":
                    base_ms, base_flops = ms, flops
                bench.report.row("train", dict(
                    variant=variant, kernels=kernels_on, compiled=compiled, batch=batch,
                    tokens=length,
                    ms_per_step=ms, ratio_to_mha=ms / base_ms if base_ms else float("nan"),
                    flops_ratio_to_mha=flops / base_flops if base_flops else float("nan"),
                    peak_memory_MB=memory / 1e6))
                model = step = None  # freed before the next


def bench_prefill(bench: Bench, options):
    """An inference prefill of one latent attention layer into its cache, per B x T shape
    (``--prefill_shapes``): time and peak memory; with ``--compare_chunks`` also with the
    stride-aware mask built for the whole prompt at once (PREFILL_CHUNK off) beside the
    default (PREFILL_CHUNK queries at a time)."""
    import espnet2_mtla.attention.mtla as mtla

    device, dtype = bench.device, bench.dtype
    chunk = mtla.PREFILL_CHUNK
    for variant in [name for name in options.variants if name.startswith(("mla", "mtla"))]:
        attention, conf = bench.variants[variant]
        torch.manual_seed(0)
        module = build_attention(attention, bench.size["d_model"], bench.size["heads"],
                                 **conf).to(device, dtype).eval()
        for batch, length in options.prefill_shapes:
            x = torch.randn(batch, length, bench.size["d_model"], device=device, dtype=dtype)
            positions = torch.arange(length, device=device).expand(batch, -1)
            for chunked in (True, False) if options.compare_chunks else (True,):
                cache = None

                def prefill():
                    nonlocal cache
                    cache = module.make_cache(batch, device, dtype, capacity=length)
                    module(x, position=positions, cache=cache)

                mtla.PREFILL_CHUNK = chunk if chunked else length + 1
                try:
                    with torch.no_grad():
                        prefill()
                        reset_peak(device)
                        seconds = median_time(prefill, device, repeats=3, warmup=0)
                        memory = peak_memory(device)
                except torch.OutOfMemoryError:
                    seconds = memory = float("nan")
                    torch.cuda.empty_cache()
                finally:
                    mtla.PREFILL_CHUNK = chunk
                bench.report.row("prefill", dict(
                    variant=variant, batch=batch, tokens=length, chunked=chunked,
                    ms=seconds * 1e3, peak_memory_MB=memory / 1e6,
                    cache_MB=cache.nbytes() / 1e6 if cache is not None else float("nan")))
                cache = None
        module = None  # freed before the next variant


SECTIONS = {"copy": bench_copy, "decode": bench_decode, "kernel": bench_kernel,
            "beam": bench_beam, "train": bench_train, "prefill": bench_prefill,
            "generate": bench_generate}
