"""The benchmark's ``generate`` section: Transformers' ``generate()`` with long prompts,
Llama against LlamaMTLA (issue #24's shapes), time and peak memory beside the bound the
cache bytes set.

Subjects, all with the same random-weight Llama body (width 1024, 16 heads, FFN 2816,
8 layers, vocabulary 32k; tiny sizes under ``--tiny``): ``llama`` (SDPA, Transformers'
default dynamic cache), ``llama_static`` (a static cache, which Transformers' generate()
compiles the forward for: the strong baseline), and ``mtla_s1`` / ``mtla_s2`` / ``mtla_s4``
(LlamaMTLA, r 512, rope 32, value 64, with its compressed cache, whose decode steps are
replayed from CUDA graphs on CUDA; ``mtla_s<s>_eager``: the same with every step eager,
``MTLACache(cuda_graphs=False)``). Greedy, exactly
``--new_tokens`` tokens (no EOS), a left-aligned batch of random prompts. Each subject
runs once to warm up (compilation, captures: ``first_s``), then ``--generate_repeats``
times: ``seconds`` is their median (the host's share of a step, and so a run's time,
moves by up to ~1 ms a step between runs of one process); as many runs with one new
token give the prefill's median time (``prefill_s``) and so the decode steps'
(``decode_ms_per_step``). Since that difference of two medians carries both runs' spread,
one more full run clocks every step itself (``step_ms_median``, ``step_ms_p90``): a
stopping criterion waits for the GPU and reads the clock after each token, so an interval
is one whole decode step, host and GPU, with the sync it adds. The peak memory is that
of the last of the timed full runs.
``--prefill_chunk_size`` feeds the prompt in chunks (Transformers' own option, the same
for every subject): the prefill's activations are then one chunk's, not the prompt's.
"""

import itertools
import statistics
import time

import torch

LLAMA = dict(hidden_size=1024, num_attention_heads=16, num_key_value_heads=16,
             intermediate_size=2816, num_hidden_layers=8, vocab_size=32000)
LATENT = dict(kv_lora_rank=512, qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64)
TINY_LLAMA = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=4,
                  intermediate_size=128, num_hidden_layers=2, vocab_size=100)
TINY_LATENT = dict(kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=16)
SUBJECTS = ("llama", "llama_static", "mtla_s1", "mtla_s2", "mtla_s4", "mtla_s1_eager",
            "mtla_s2_eager", "mtla_s4_eager")


def down_rate_of(subject) -> int:
    """s of an ``mtla_s<s>`` or ``mtla_s<s>_eager`` subject."""
    return int(subject.split("_s")[1].split("_")[0])


def fresh_cache(subject, model) -> dict:
    """generate() options of one run: an eager subject's own cache (graphs off), made new
    for each run; nothing for the others (generate() makes their caches)."""
    if not subject.endswith("_eager"):
        return {}
    import espnet2_mtla.hf as hf

    cache = hf.MTLACache(model.config.num_hidden_layers, cuda_graphs=False)
    return {hf.modeling.CACHE_FIELD: cache}


def cache_bytes_per_token(subject, llama, latent, dtype) -> float:
    """Cache bytes per token and layer: keys and values per KV head for Llama, one
    (r + d_r) entry per s tokens for LlamaMTLA."""
    size = torch.finfo(dtype).bits // 8
    if subject.startswith("llama"):
        head = llama["hidden_size"] // llama["num_attention_heads"]
        return 2 * llama["num_key_value_heads"] * head * size
    return (latent["kv_lora_rank"] + latent["qk_rope_head_dim"]) * size / down_rate_of(subject)


class StepClock:
    """A ``generate()`` stopping criterion that stops nothing: it waits for the device and
    notes the time after each new token, so consecutive notes bracket one decode step."""

    def __init__(self, device):
        from espnet2_mtla.benchmark.timing import synchronize

        self.device, self.times, self.synchronize = device, [], synchronize

    def __call__(self, input_ids, scores, **kwargs):
        self.synchronize(self.device)  # (nothing else inside the clocked step)
        self.times.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def step_ms(self) -> list:
        """Milliseconds of each decode step after the first new token."""
        return [1e3 * (b - a) for a, b in zip(self.times, self.times[1:])]


def build_subject(subject, llama, latent, device, dtype):
    """(model, extra generate() options) of a subject, random weights (seed 0)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**llama, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    if subject.startswith("llama"):
        config._attn_implementation = "sdpa"
        model = LlamaForCausalLM(config)
        options = {"cache_implementation": "static"} if subject == "llama_static" else {}
    else:
        import espnet2_mtla.hf as hf

        model = hf.LlamaMTLAForCausalLM(
            hf.LlamaMTLAConfig(**config.to_dict(), **latent, down_rate=down_rate_of(subject)))
        options = {}
    return model.to(device, dtype).eval(), options


def timed_generate(model, ids, subject, settings, device) -> float:
    """Seconds of one generate() (a fresh cache for eager subjects), the peak reset first."""
    from espnet2_mtla.benchmark.timing import fresh_memory, reset_peak, synchronize

    settings = {**settings, **fresh_cache(subject, model)}
    fresh_memory(device)
    reset_peak(device)
    synchronize(device)
    start = time.perf_counter()
    model.generate(ids, **settings)
    settings = None  # (the cache freed before the clock stops: as every subject)
    synchronize(device)
    return time.perf_counter() - start


def bench_generate(bench, options):
    """generate() per subject and B x prompt shape (``--generate_shapes``), with the
    ratios to Llama's default cache beside the cache-bytes bound."""
    from transformers import StoppingCriteriaList

    from espnet2_mtla.benchmark.timing import peak_memory

    device, dtype = bench.device, bench.dtype
    llama, latent = (TINY_LLAMA, TINY_LATENT) if options.tiny else (LLAMA, LATENT)
    import transformers
    print(f"generate: Llama {llama}, latent {latent}, transformers {transformers.__version__} "
          "(the sizes line above is the other sections' model)")
    for (batch, prompt), chunk in itertools.product(options.generate_shapes,
                                                    options.prefill_chunk_size):
        ids = torch.randint(3, llama["vocab_size"], (batch, prompt), device=device,
                            generator=torch.Generator(device).manual_seed(0))
        base = None
        for subject in options.generate_subjects:
            model, extra = build_subject(subject, llama, latent, device, dtype)
            if chunk:
                extra["prefill_chunk_size"] = chunk
            settings = dict(max_new_tokens=options.new_tokens, min_new_tokens=options.new_tokens,
                            do_sample=False, eos_token_id=None, pad_token_id=0,
                            attention_mask=torch.ones_like(ids), **extra)
            repeats = max(1, options.generate_repeats)
            first_token = {**settings, "max_new_tokens": 1, "min_new_tokens": 1}
            try:
                with torch.no_grad():
                    first = timed_generate(model, ids, subject, settings, device)  # warm-up
                    runs = [timed_generate(model, ids, subject, settings, device)
                            for _ in range(repeats)]
                    memory = peak_memory(device)
                    # the prefill and the first token alone: the rest is the decode steps
                    prefills = [timed_generate(model, ids, subject, first_token, device)
                                for _ in range(repeats)]
                    clock = StepClock(device)
                    timed_generate(model, ids, subject, {**settings, "stopping_criteria":
                                                         StoppingCriteriaList([clock])}, device)
                    steps = sorted(clock.step_ms()) or [float("nan")]
                seconds, prefill = (first, statistics.median(runs)), statistics.median(prefills)
            except torch.OutOfMemoryError:
                seconds, memory, prefill = [float("nan")] * 2, float("nan"), float("nan")
                steps = [float("nan")]
            per_token = cache_bytes_per_token(subject, llama, latent, dtype)
            if subject == "llama":
                base = (seconds[1], per_token)
            bench.report.row("generate", dict(
                subject=subject, batch=batch, prompt=prompt, prefill_chunk=chunk,
                new_tokens=options.new_tokens, repeats=repeats,
                first_s=seconds[0], seconds=seconds[1], prefill_s=prefill,
                decode_ms_per_step=1e3 * (seconds[1] - prefill) / max(1, options.new_tokens - 1),
                step_ms_median=statistics.median(steps),
                step_ms_p90=steps[min(len(steps) - 1, int(0.9 * len(steps)))],
                peak_memory_MB=memory / 1e6,
                cache_bytes_per_token=per_token,
                speedup_vs_llama=base[0] / seconds[1] if base else float("nan"),
                bytes_bound_vs_llama=base[1] / per_token if base else float("nan")))
            model = None
