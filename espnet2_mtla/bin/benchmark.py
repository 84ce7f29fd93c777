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
  weights and a fixed output length: wall time and peak GPU memory. Baselines:
  ``mha_paper`` (fairseq-style: cache grown by concatenation, attention as bmm +
  softmax, every cache reordered by index_select each step) and ``mha`` (ours:
  preallocated cache, fused SDPA), plus the reference ``mtla`` package's MTLA.
- ``train``: one training step (forward + backward) of the decoder stack at T tokens
  (MTLA through FlexAttention with the stride-aware mask on CUDA).

Beam search replays each decoding step from CUDA graphs where the caches allow it (ours;
not the paper-style MHA nor the reference package, whose caches grow by concatenation).

Every row is printed, and written to ``<out>/<section>.csv``; ``--plot`` draws PNGs
from the CSVs (needs matplotlib; can be run later on another machine).
"""

import argparse
import csv
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from espnet2_mtla.attention import build_attention
from espnet2_mtla.attention.cache import KVCache, LatentCache
from espnet2_mtla.attention.mha import MultiHeadAttention
from espnet2_mtla.inference.beam_search import BatchBeamSearch
from espnet2_mtla.kernels import set_kernels_enabled
from espnet2_mtla.model.decoder import DecoderOnlyStack
from espnet2_mtla.model.prefix_lm import EncodedPrefix, PrefixLM, left_aligned

LATENT = dict(kv_lora_rank=256, qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64)
VARIANTS = {  # name: (attention type, attention_conf)
    "mha": ("mha", {}),
    "mqa": ("mqa", {}),
    "gqa2": ("gqa", {"num_kv_heads": 2}),
    "gqa4": ("gqa", {"num_kv_heads": 4}),
    "mla": ("mla", LATENT),
    "mtla_s2": ("mtla", {**LATENT, "down_rate": 2}),
    "mtla_s3": ("mtla", {**LATENT, "down_rate": 3}),
    "mtla_s4": ("mtla", {**LATENT, "down_rate": 4}),
}
TINY_LATENT = dict(kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16)
LATENT_OF = {False: LATENT, True: TINY_LATENT}  # by --tiny
# the paper's MuST-C model (BenchModel's size keys, plus the vocabulary), and a CPU one
PAPER_SIZES = dict(d_model=512, heads=8, ffn=2048, encoder_layers=12, decoder_layers=9,
                   vocab=10000)
TINY_SIZES = dict(d_model=64, heads=4, ffn=128, encoder_layers=1, decoder_layers=2, vocab=50)


# --- timing -----------------------------------------------------------------------------
def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, device, repeats=20, warmup=3):
    """Median seconds of fn() (device events on CUDA, a host clock on the CPU)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            begin = time.perf_counter()
            fn()
            times.append(time.perf_counter() - begin)
    return sorted(times)[len(times) // 2]


def graph_replay_time(step, restore_state, device, repeats=20):
    """Median seconds of one replay of ``step`` captured in a CUDA graph (GPU time alone,
    no Python or launch overhead); NaN where capture is not possible."""
    if device.type != "cuda":
        return float("nan")
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                restore_state()
                step()
        torch.cuda.current_stream().wait_stream(side)
        restore_state()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        return median_time(graph.replay, device, repeats=repeats)
    except Exception as error:  # e.g. a host sync inside the step
        print(f"  (no CUDA graph: {type(error).__name__}: {str(error)[:80]})")
        return float("nan")


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory(device):
    return torch.cuda.max_memory_allocated() if device.type == "cuda" else float("nan")


# --- caches filled directly (a prefill of 64k tokens is not what is measured) -------------
def cache_bytes_per_token(module, itemsize) -> float:
    if isinstance(module, MultiHeadAttention):
        return 2 * module.num_kv_heads * module.head_dim * itemsize
    width = module.kv_lora_rank + module.qk_rope_head_dim
    return width * itemsize / module.down_rate


def filled_cache(module, batch, length, device, dtype, extra=64):
    """A cache holding ``length`` random tokens, with room for ``extra`` more."""
    cache = module.make_cache(batch, device, dtype, capacity=length + extra)
    if isinstance(cache, KVCache):
        cache.keys[:, :length].normal_()
        cache.values[:, :length].normal_()
    else:
        entries = math.ceil(length / module.down_rate)
        cache.entries[:, :entries].normal_()
        cache.num_entries.fill_(entries)
        cache.first_chunk.fill_(0)
    cache.num_tokens = length
    cache.next_position.fill_(length)
    return cache


class PaperStyleMHA(nn.Module):
    """fairseq-style incremental MHA: the cache grows by torch.cat every step and is
    reordered by index_select; attention is bmm + softmax. Weights of a MultiHeadAttention."""

    def __init__(self, ours: MultiHeadAttention):
        super().__init__()
        self.ours = ours

    def make_cache(self, batch_size, device=None, dtype=None, capacity=0):
        return PaperStyleCache(batch_size, device)

    def forward(self, query, key=None, position=None, key_padding_mask=None, cache=None):
        from espnet2_mtla.attention.rotary import apply_rotary, rotary_angles

        ours = self.ours
        key = query if key is None else key
        batch, query_len, _ = query.shape
        key_len = key.shape[1]
        if position is None:
            position = cache.next_position[:, None] + torch.arange(key_len, device=key.device)
        angles = rotary_angles(position, ours.head_dim)
        q = apply_rotary(ours.q_proj(query).view(batch, query_len, ours.num_heads, -1),
                         angles[:, key_len - query_len :])
        k = apply_rotary(ours.k_proj(key).view(batch, key_len, ours.num_kv_heads, -1), angles)
        v = ours.v_proj(key).view(batch, key_len, ours.num_kv_heads, -1)
        if cache is not None:
            k, v = cache.append(k, v)
            cache.next_position = position[:, -1] + 1
        group = ours.num_heads // ours.num_kv_heads
        k = k.repeat_interleave(group, dim=2).transpose(1, 2)  # (B, H, T, d_h)
        v = v.repeat_interleave(group, dim=2).transpose(1, 2)
        scores = torch.matmul(q.transpose(1, 2), k.transpose(-1, -2)) * ours.head_dim**-0.5
        total = k.shape[2]
        causal = torch.ones(query_len, total, dtype=torch.bool, device=query.device).tril(
            total - query_len
        )
        probs = scores.masked_fill(~causal, float("-inf")).float().softmax(-1).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).flatten(2)
        return ours.out_proj(out)


class PaperStyleCache:
    def __init__(self, batch_size, device):
        self.keys = self.values = None
        self.batch_size = batch_size
        self.next_position = torch.zeros(batch_size, dtype=torch.long, device=device)

    def append(self, k, v):
        self.keys = k if self.keys is None else torch.cat([self.keys, k], dim=1)
        self.values = v if self.values is None else torch.cat([self.values, v], dim=1)
        return self.keys, self.values

    def reorder(self, batch_index):
        self.keys = self.keys.index_select(0, batch_index)
        self.values = self.values.index_select(0, batch_index)
        self.next_position = self.next_position.index_select(0, batch_index)
        self.batch_size = len(batch_index)

    def nbytes(self):
        return 0 if self.keys is None else 2 * self.keys.numel() * self.keys.element_size()

    nbytes_bound = nbytes


class ReferenceMTLA(nn.Module):
    """The reference package's MTLA behind our layer interface (its own cat-grown cache)."""

    def __init__(self, embed_dim, num_heads, **conf):
        super().__init__()
        from mtla.MTLA import MultiheadTemporalLatentAttention as Reference

        self.reference = Reference(embed_dim, num_heads, **conf)

    def make_cache(self, batch_size, device=None, dtype=None, capacity=0):
        return ReferenceCache(self.reference, batch_size, device)

    def forward(self, query, key=None, position=None, key_padding_mask=None, cache=None):
        key = query if key is None else key
        if position is None:
            position = cache.next_position[:, None] + torch.arange(key.shape[1], device=key.device)
        cache.next_position = position[:, -1] + 1
        return self.reference(query, key, key, position=position.float(),
                              incremental_state=cache.state)


class ReferenceCache:
    def __init__(self, reference, batch_size, device):
        self.reference, self.state, self.batch_size = reference, {}, batch_size
        self.next_position = torch.zeros(batch_size, dtype=torch.long, device=device)

    def reorder(self, batch_index):
        self.reference.reorder_incremental_state(self.state, batch_index)
        self.next_position = self.next_position.index_select(0, batch_index)
        self.batch_size = len(batch_index)

    def nbytes(self):
        return sum(t.numel() * t.element_size() for buffer in self.state.values()
                   for name, t in buffer.items() if name.startswith("prev"))

    nbytes_bound = nbytes


# --- the beam-search model ---------------------------------------------------------------
class BenchModel(nn.Module, PrefixLM):
    """Random-weight decoder-only model: 12-layer encoder prefix + 9-layer decoder."""

    prefix_input_name = "speech"

    def __init__(self, attention, attention_conf, size, vocab_size):
        super().__init__()
        d_model = size["d_model"]
        self.front = nn.Linear(80, d_model)
        layer = nn.TransformerEncoderLayer(d_model, size["heads"], size["ffn"], dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, size["encoder_layers"])
        baseline = attention in ("mha_paper", "reference_mtla")  # built as mha, then swapped
        self.decoder = DecoderOnlyStack(
            vocab_size, d_model, size["heads"], size["decoder_layers"], size["ffn"], 0.0,
            "mha" if baseline else attention, {} if baseline else attention_conf,
        )
        if attention == "mha_paper":
            for layer in self.decoder.layers:
                layer.attn = PaperStyleMHA(layer.attn)
        elif attention == "reference_mtla":
            for layer in self.decoder.layers:
                layer.attn = ReferenceMTLA(d_model, size["heads"], **attention_conf)
        self.eos = vocab_size - 1
        self.ignore_id = -1
        self.task_token_id = vocab_size - 1

    def encode_prefix(self, batch):
        feats, lengths = batch["speech"], batch["speech_lengths"]
        encoded = self.encoder(self.front(feats))
        # no CTC head: no encoder output for it
        return EncodedPrefix(*left_aligned(encoded, lengths), lengths)


class FixedLengthBeamSearch(BatchBeamSearch):
    """Beam search producing exactly ``output_len`` tokens (random weights never stop)."""

    def __init__(self, model, beam_size, output_len, cuda_graphs=None, encode_batched=True):
        super().__init__(model, beam_size=beam_size, cuda_graphs=cuda_graphs,
                         encode_batched=encode_batched)
        self.output_len = output_len

    def length_limits(self, prefix_lengths):
        count = len(prefix_lengths)
        return [self.output_len] * count, [self.output_len] * count


# --- sections --------------------------------------------------------------------------
def bench_copy(args, device, dtype):
    numel = args.copy_mb * 2**20 // 2
    source = torch.randn(numel, device=device, dtype=torch.float16)
    target = torch.empty_like(source)
    seconds = median_time(lambda: target.copy_(source), device)
    bandwidth = 2 * source.numel() * source.element_size() / seconds
    return [{"bytes": 2 * source.numel() * 2, "seconds": seconds, "GB_per_s": bandwidth / 1e9}]


def decode_subject(variant, args, device, dtype):
    """(module, filled-cache factory, cache bytes per token) of a decode-sweep variant."""
    itemsize = torch.tensor([], dtype=dtype).element_size()
    torch.manual_seed(0)
    if variant == "mha_paper":
        module = PaperStyleMHA(build_attention("mha", args.d_model, args.heads))

        def make(batch, length):
            cache = module.make_cache(batch, device)
            shape = (batch, length, args.heads, args.d_model // args.heads)
            cache.append(torch.randn(shape, device=device, dtype=dtype),
                         torch.randn(shape, device=device, dtype=dtype))
            cache.next_position.fill_(length)
            return cache

        return module.to(device, dtype).eval(), make, 2 * args.d_model * itemsize
    if variant == "reference_mtla_s2":
        conf = {**LATENT_OF[args.tiny], "down_rate": 2}
        module = ReferenceMTLA(args.d_model, args.heads, **conf).to(device, dtype).eval()

        def make(batch, length):
            cache = module.make_cache(batch, device)
            entries = math.ceil(length / 2)
            cache.state[module.reference._get_full_incremental_state_key("attn_state")] = {
                "prev_kv_t": torch.randn(batch, entries, conf["kv_lora_rank"], device=device,
                                         dtype=dtype),
                "prev_k_pe": torch.randn(batch, entries, conf["qk_rope_head_dim"],
                                         device=device, dtype=dtype),
                "infer_steps": torch.full((batch,), length, device=device),
            }
            cache.next_position.fill_(length)
            return cache

        width = conf["kv_lora_rank"] + conf["qk_rope_head_dim"]
        return module, make, width * itemsize / 2
    attention, conf = VARIANTS[variant]
    module = build_attention(attention, args.d_model, args.heads, **conf).to(device, dtype)
    module.eval()
    return (module, lambda batch, length: filled_cache(module, batch, length, device, dtype),
            cache_bytes_per_token(module, itemsize))


def snapshot(cache):
    """What one decode step changes in a cache, to undo it between timed repeats."""
    if isinstance(cache, LatentCache):  # the update kernel writes these in place
        return dict(num_tokens=cache.num_tokens, next_position=cache.next_position.clone(),
                    num_entries=cache.num_entries.clone(), first_chunk=cache.first_chunk.clone())
    if isinstance(cache, KVCache):
        return dict(num_tokens=cache.num_tokens, next_position=cache.next_position.clone())
    if isinstance(cache, PaperStyleCache):
        return dict(keys=cache.keys, values=cache.values, next_position=cache.next_position)
    return dict(state={k: dict(v) for k, v in cache.state.items()},
                next_position=cache.next_position)


def restore(cache, saved):
    for name, value in saved.items():
        if name == "state":
            value = {k: dict(v) for k, v in value.items()}
        elif isinstance(value, torch.Tensor):
            value = value.clone()
        setattr(cache, name, value)


def bench_decode(args, device, dtype, copy_bandwidth):
    variants = ["mha_paper"] + list(args.variants)
    if args.reference:
        variants.append("reference_mtla_s2")
    for variant in variants:
        try:
            module, make_cache, per_token = decode_subject(variant, args, device, dtype)
        except ImportError as error:
            print(f"skip {variant}: {error}")
            continue
        for batch in args.batches:
            for length in args.lengths:
                if batch * length * per_token > args.max_cache_gb * 1e9:
                    continue
                cache = make_cache(batch, length)
                x = torch.randn(batch, 1, args.d_model, device=device, dtype=dtype)
                saved = snapshot(cache)

                def step():
                    restore(cache, saved)
                    module(x, cache=cache)

                with torch.no_grad():
                    seconds = median_time(step, device, repeats=args.repeats)
                    replay = float("nan")
                    if not variant.startswith("reference"):  # it syncs: no graph capture
                        replay = graph_replay_time(lambda: module(x, cache=cache),
                                                   lambda: restore(cache, saved), device,
                                                   repeats=args.repeats)
                cache_bytes = batch * length * per_token
                print_row("decode", dict(variant=variant, dtype=str(dtype)[6:], batch=batch,
                                         cache_len=length, cache_MB=cache_bytes / 1e6,
                                         us_per_step=seconds * 1e6, graph_us_per_step=replay * 1e6,
                                         graph_GB_per_s=cache_bytes / replay / 1e9,
                                         graph_of_copy_bw=cache_bytes / replay / copy_bandwidth))
                del cache, saved


def bench_kernel(args, device, dtype, copy_bandwidth):
    """The latent decode kernel alone (no projections), over tile and launch settings."""
    from espnet2_mtla.kernels.latent_decode import latent_attention_decode

    rank, rope = LATENT_OF[args.tiny]["kv_lora_rank"], LATENT_OF[args.tiny]["qk_rope_head_dim"]
    for batch in args.batches:
        for entries_count in args.kernel_entries:
            entries = torch.randn(batch, entries_count + 1, rank + rope, device=device,
                                  dtype=dtype)
            lengths = torch.full((batch,), entries_count, device=device)
            query = torch.randn(batch, args.heads, rank + rope, device=device, dtype=dtype)
            cache_bytes = batch * entries_count * (rank + rope) * entries.element_size()
            for block_n, warps, stages in args.kernel_configs:
                def run():
                    latent_attention_decode(query, entries, lengths, rank, 0.1,
                                            entries_count, block_n, warps, stages)
                try:
                    run()  # compile outside the graph
                except Exception as error:  # e.g. out of shared memory for this tile
                    print(f"  (config {block_n},{warps},{stages}: {type(error).__name__})")
                    continue
                seconds = graph_replay_time(run, lambda: None, device, args.repeats)
                if math.isnan(seconds):
                    seconds = median_time(run, device, repeats=args.repeats)
                print_row("kernel", dict(batch=batch, entries=entries_count, block_n=block_n,
                                         num_warps=warps, num_stages=stages, us=seconds * 1e6,
                                         GB_per_s=cache_bytes / seconds / 1e9,
                                         of_copy_bw=cache_bytes / seconds / copy_bandwidth))
            del entries


def bench_beam(args, device, dtype):
    size = dict(d_model=args.d_model, heads=args.heads, ffn=args.ffn,
                encoder_layers=args.encoder_layers, decoder_layers=args.decoder_layers)
    runs = [(variant, dtype) for variant in ["mha_paper"] + list(args.variants)]
    if args.reference:  # its prefill only runs in fp32: compare with ours in fp32 too
        fp32 = torch.float32
        runs += [("mha_paper", fp32), ("mtla_s2", fp32), ("reference_mtla_s2", fp32)]
    for variant, dtype in runs:
        if variant == "mha_paper":
            attention, conf = "mha_paper", {}
        elif variant == "reference_mtla_s2":
            attention, conf = "reference_mtla", {**LATENT_OF[args.tiny], "down_rate": 2}
        else:
            attention, conf = VARIANTS[variant]
        for beam in args.beams:
            latent = variant.startswith(("mla", "mtla"))
            settings = [(True, None)]  # (kernels, cuda_graphs: None = the default)
            if args.compare_graphs and variant in VARIANTS:
                settings = [(True, True), (True, False)]
            if latent and args.compare_kernels:
                settings.append((False, None))
            for kernels, graphs in settings:
                set_kernels_enabled(kernels)
                torch.manual_seed(0)
                try:
                    model = BenchModel(attention, conf, size, args.vocab).to(device, dtype).eval()
                except ImportError as error:
                    print(f"skip {variant}: {error}")
                    break
                batch = {
                    "speech": torch.randn(args.utterances, args.prefix_len, 80, device=device,
                                          dtype=dtype),
                    "speech_lengths": torch.full((args.utterances,), args.prefix_len,
                                                 device=device),
                }
                search = FixedLengthBeamSearch(model, beam, args.output_len, graphs,
                                               encode_batched=not args.encode_each)
                with torch.no_grad():
                    search.search({k: v[:1] for k, v in batch.items()})  # warm-up
                    reset_peak(device)
                    synchronize(device)
                    begin = time.perf_counter()
                    results, stats = search.search(batch)
                    synchronize(device)
                seconds = time.perf_counter() - begin
                print_row("beam", dict(variant=variant, dtype=str(dtype)[6:], kernels=kernels,
                                       cuda_graphs=stats.graph_replays > 0, beam=beam,
                                       utterances=args.utterances, output_len=args.output_len,
                                       seconds=seconds, peak_memory_MB=peak_memory(device) / 1e6,
                                       peak_cache_MB=stats.peak_cache_bytes / 1e6))
                del model, search
    set_kernels_enabled(True)


def bench_train(args, device, dtype):
    for variant in args.variants:
        attention, conf = VARIANTS[variant]
        # MTLA's own training path (FlexAttention) and, to compare, the dense-mask SDPA one
        kernel_settings = [True]
        if variant.startswith("mtla") and args.compare_kernels:
            kernel_settings.append(False)
        for kernels in kernel_settings:
            set_kernels_enabled(kernels)
            for length in args.train_lengths:
                torch.manual_seed(0)
                model = DecoderOnlyStack(args.vocab, args.d_model, args.heads,
                                         args.decoder_layers, args.ffn, 0.0, attention,
                                         conf).to(device, dtype)
                tokens = torch.randint(0, args.vocab, (1, length), device=device)
                positions = torch.arange(length, device=device)[None]

                def step():
                    hidden = model(model.embed(tokens), positions, None)
                    loss = F.cross_entropy(model.logits(hidden).flatten(0, 1).float(),
                                           tokens.flatten())
                    loss.backward()

                try:
                    step()  # compile (FlexAttention) outside the measurement
                    reset_peak(device)
                    seconds = median_time(step, device, repeats=args.repeats // 4 + 1,
                                          warmup=1)
                    memory = peak_memory(device)
                except torch.OutOfMemoryError:
                    seconds = memory = float("nan")
                print_row("train", dict(variant=variant, kernels=kernels, tokens=length,
                                        ms_per_step=seconds * 1e3,
                                        peak_memory_MB=memory / 1e6))
                del model
    set_kernels_enabled(True)


CSV_DIR = None  # set by main(): rows are appended to <out>/<section>.csv as they come


def print_row(section, row):
    cells = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()]
    print(f"[{section}] " + " ".join(cells), flush=True)
    path = CSV_DIR / f"{section}.csv"
    new = not path.exists()
    with open(path, "a", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def plot(out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    decode = out / "decode.csv"
    if decode.exists():
        rows = list(csv.DictReader(open(decode)))
        batches = sorted({int(r["batch"]) for r in rows})
        fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 4), squeeze=False)
        for axis, batch in zip(axes[0], batches):
            for index, variant in enumerate(dict.fromkeys(r["variant"] for r in rows)):
                chosen = [r for r in rows if r["variant"] == variant and int(r["batch"]) == batch]
                label = variant  # on the first line drawn for the variant
                for column, style in (("graph_us_per_step", "-"), ("us_per_step", ":")):
                    points = [(int(r["cache_len"]), float(r[column])) for r in chosen
                              if not math.isnan(float(r[column]))]
                    if points:
                        axis.loglog(*zip(*points), style, marker="o", color=f"C{index}",
                                    label=label)
                        label = None
            axis.set_title(f"decode step, batch {batch}\n(solid: GPU time, dotted: eager)",
                           fontsize=9)
            axis.set(xlabel="cache length (tokens)", ylabel="microseconds per step")
            axis.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "decode.png", dpi=120)
    beam = out / "beam.csv"
    if beam.exists():
        first = {}  # per (variant, dtype, beam): the first row (kernels and graphs on)
        for r in csv.DictReader(open(beam)):
            first.setdefault((r["variant"], r["dtype"], r["beam"]), r)
        rows = list(first.values())
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for beam_size in sorted({r["beam"] for r in rows}):
            chosen = [r for r in rows if r["beam"] == beam_size]
            names = [r["variant"] for r in chosen]
            axes[0].bar([f"{n}\nb{beam_size}" for n in names], [float(r["seconds"]) for r in chosen])
            axes[1].bar([f"{n}\nb{beam_size}" for n in names],
                        [float(r["peak_memory_MB"]) for r in chosen])
        axes[0].set(ylabel="seconds", title="batched beam search")
        axes[1].set(ylabel="peak GPU MB", title="batched beam search")
        for axis in axes:
            axis.tick_params(axis="x", labelsize=6, rotation=90)
        fig.tight_layout()
        fig.savefig(out / "beam.png", dpi=120)


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_out")
    parser.add_argument("--sections", nargs="+", default=["copy", "decode", "kernel", "beam", "train"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
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
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    parser.add_argument("--max_cache_gb", type=float, default=20.0)
    parser.add_argument("--beams", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--utterances", type=int, default=64)
    parser.add_argument("--prefix_len", type=int, default=300)
    parser.add_argument("--output_len", type=int, default=100)
    parser.add_argument("--train_lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--kernel_entries", type=int, nargs="+", default=[8192, 32768])
    parser.add_argument("--kernel_configs", type=lambda text: tuple(map(int, text.split(","))),
                        nargs="+", default=[(32, 4, 4)],
                        help="block_n,num_warps,num_stages of the latent decode kernel")
    parser.add_argument("--copy_mb", type=int, default=2048)
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.plot:
        plot(out)
        return
    global CSV_DIR
    CSV_DIR = out
    for section in args.sections:
        (out / f"{section}.csv").unlink(missing_ok=True)
    sizes = PAPER_SIZES
    if args.tiny:
        sizes = TINY_SIZES
        for name, (attention, conf) in VARIANTS.items():
            if "kv_lora_rank" in conf:
                VARIANTS[name] = (attention, {**conf, **TINY_LATENT})
    for key, value in sizes.items():
        setattr(args, key, value)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    info = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device {info}, torch {torch.__version__}, dtype {args.dtype}, sizes {sizes}")

    copy_bandwidth = float("nan")
    if "copy" in args.sections:
        rows = bench_copy(args, device, dtype)
        copy_bandwidth = rows[0]["GB_per_s"] * 1e9
        print_row("copy", rows[0])
    sections = {
        "decode": lambda: bench_decode(args, device, dtype, copy_bandwidth),
        "kernel": lambda: bench_kernel(args, device, dtype, copy_bandwidth),
        "beam": lambda: bench_beam(args, device, dtype),
        "train": lambda: bench_train(args, device, dtype),
    }
    for name, run in sections.items():
        if name in args.sections:
            run()


if __name__ == "__main__":
    main()
