"""The benchmark script runs end to end at tiny sizes on the CPU (no timing asserted)."""

import csv

import torch

from espnet2_mtla.benchmark.variants import VARIANTS
from espnet2_mtla.bin.benchmark import main


def test_benchmark_smoke_run_writes_every_section(tmp_path):
    main(["--tiny", "--device", "cpu", "--dtype", "float32", "--out", str(tmp_path),
          "--batches", "2", "--lengths", "32", "--beams", "2", "--utterances", "2",
          "--prefix_len", "8", "--output_len", "3", "--train_shapes", "2x16",
          "--repeats", "1", "--copy_mb", "4", "--variants", "mha", "mla", "mtla_s2",
          "--compare_shared_prefix"])
    decode = list(csv.DictReader(open(tmp_path / "decode.csv")))
    assert {row["variant"] for row in decode} == {"mha_paper", "mha", "mla", "mtla_s2"}
    beam = list(csv.DictReader(open(tmp_path / "beam.csv")))
    assert {row["variant"] for row in beam} == {"mha_paper", "mha", "mla", "mtla_s2"}
    by_variant = {row["variant"]: float(row["peak_cache_MB"]) for row in beam
                  if row["shared_prefix"] == "False"}
    assert by_variant["mtla_s2"] < by_variant["mla"] < by_variant["mha"]  # the cache shrinks
    shared = {row["variant"]: float(row["peak_cache_MB"]) for row in beam
              if row["shared_prefix"] == "True"}
    assert set(shared) == {"mha", "mla", "mtla_s2"}  # our variants, each prefix held once
    assert all(shared[name] < by_variant[name] for name in shared)
    train = {row["variant"]: row for row in csv.DictReader(open(tmp_path / "train.csv"))}
    assert set(train) == {"mha", "mla", "mtla_s2"}
    assert (train["mha"]["batch"], train["mha"]["tokens"]) == ("2", "16")
    assert float(train["mha"]["ratio_to_mha"]) == 1.0
    assert float(train["mha"]["flops_ratio_to_mha"]) == 1.0
    # MLA's query-key is wider than MHA's head and it has the latent projections: more
    # arithmetic per step (the bound the table prints beside each time ratio)
    assert float(train["mla"]["flops_ratio_to_mha"]) > 1.0
    assert float(train["mla"]["ratio_to_mha"]) > 0
    assert set(VARIANTS) >= {"mha", "mla", "mtla_s2"}
    # the prefill section: latent variants only, the cache s times smaller than MLA's
    prefill = {row["variant"]: row for row in csv.DictReader(open(tmp_path / "prefill.csv"))}
    assert set(prefill) == {"mla", "mtla_s2"}
    assert float(prefill["mtla_s2"]["cache_MB"]) < float(prefill["mla"]["cache_MB"])
    main(["--plot", "--out", str(tmp_path)])
    assert (tmp_path / "decode.png").exists() and (tmp_path / "beam.png").exists()


def test_train_section_with_compiled_layers(tmp_path):
    """--train_compile: each variant also with decoder_conf compile (its layers through
    torch.compile), against MHA of the same setting; the arithmetic bound is the same."""
    main(["--tiny", "--device", "cpu", "--dtype", "float32", "--out", str(tmp_path),
          "--sections", "train", "--train_shapes", "2x16", "--repeats", "1",
          "--variants", "mha", "mtla_s2", "--train_compile"])
    rows = {(row["variant"], row["compiled"]): row
            for row in csv.DictReader(open(tmp_path / "train.csv"))}
    assert set(rows) == {("mha", "False"), ("mha", "True"), ("mtla_s2", "False"),
                         ("mtla_s2", "True")}
    assert float(rows[("mha", "True")]["ratio_to_mha"]) == 1.0  # its own base
    assert (rows[("mtla_s2", "True")]["flops_ratio_to_mha"]
            == rows[("mtla_s2", "False")]["flops_ratio_to_mha"])
    assert all(float(row["ms_per_step"]) > 0 for row in rows.values())


def test_attention_flops_agree_with_torch_and_count_grouped_and_narrow_value_heads():
    """The train section's arithmetic bound counts fused attention by shapes: equal to
    torch's formula where torch has one, and for what torch 2.11 refuses (GQA's fewer
    key/value heads, MLA's value narrower than its query-key width) per query head."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    from espnet2_mtla.benchmark.timing import attention_flops

    q, k, v = (2, 8, 16, 64), (2, 8, 20, 64), (2, 8, 20, 64)
    assert attention_flops(q, k, v) == sdpa_flop_count(q, k, v)
    assert attention_flops(q, k, v, backward=True) == sdpa_backward_flop_count(q, q, k, v)
    grouped = attention_flops(q, (2, 2, 20, 64), (2, 2, 20, 64))
    assert grouped == attention_flops(q, k, v)  # the same products per query head
    q96, k96, v64 = (2, 8, 16, 96), (2, 8, 20, 96), (2, 8, 20, 64)
    assert attention_flops(q96, k96, v64) == 2 * 2 * 8 * 16 * 20 * (96 + 64)
    assert attention_flops(q96, k96, v64, backward=True) == 2 * 2 * 8 * 16 * 20 * (3 * 96 + 2 * 64)


def test_tiny_runs_tiny_shapes_unless_told_otherwise():
    """--tiny is a smoke run: every section's shapes are small (the paper's 16k-token
    training rows and 64k caches took the CPU an hour), and an option given still wins."""
    from espnet2_mtla.bin.benchmark import FULL_RUN, SMOKE_RUN, parse_args

    assert parse_args([]).train_shapes == FULL_RUN["train_shapes"]
    tiny = parse_args(["--tiny"])
    assert {key: getattr(tiny, key) for key in SMOKE_RUN} == SMOKE_RUN
    assert max(tokens for _, tokens in tiny.train_shapes) <= 64 and max(tiny.lengths) <= 64
    assert parse_args(["--tiny", "--train_shapes", "3x8"]).train_shapes == [(3, 8)]


def test_eos_terminated_beam_search_ends_utterances_at_their_drawn_lengths():
    """--eos_terminated: each utterance's hypotheses end at its own seeded length (the
    batch shrinks), the same lengths on every run; the fixed mode gives output_len."""
    import torch

    from espnet2_mtla.benchmark.subjects import BenchModel, FixedLengthBeamSearch
    from espnet2_mtla.benchmark.variants import at_size, sizes

    size = sizes(True)
    attention, conf = at_size(VARIANTS, True)["mtla_s2"]
    torch.manual_seed(0)
    model = BenchModel(attention, conf, size, size["vocab"]).eval()
    batch = {"speech": torch.randn(6, 8, 80), "speech_lengths": torch.full((6,), 8)}
    search = FixedLengthBeamSearch(model, 2, 12, eos_seed=0)
    lengths = search.output_lengths(6)
    assert len(set(lengths)) > 1 and all(3 <= n <= 12 for n in lengths)
    assert search.output_lengths(6) == lengths  # seeded
    with torch.no_grad():
        results, stats = search.search(batch)
    assert [len(nbest[0].tokens) for nbest in results] == lengths
    assert all(nbest[0].tokens[-1] != model.eos and nbest[0].ended for nbest in results)
    assert stats.generated_tokens == sum(lengths) + 6  # eos included
    fixed = FixedLengthBeamSearch(model, 2, 12)
    with torch.no_grad():
        assert {len(nbest[0].tokens) for nbest in fixed.search(batch)[0]} == {12}


def test_generate_section_compares_llama_and_llama_mtla(tmp_path):
    """The generate section at tiny sizes: a row per subject, each cache-bytes bound
    beside its time ratio to Llama's default cache (s = 2 halves MLA's bytes)."""
    main(["--tiny", "--device", "cpu", "--dtype", "float32", "--out", str(tmp_path),
          "--sections", "generate", "--generate_subjects", "llama", "mtla_s1", "mtla_s2"])
    rows = {row["subject"]: row for row in csv.DictReader(open(tmp_path / "generate.csv"))}
    assert set(rows) == {"llama", "mtla_s1", "mtla_s2"}
    assert float(rows["llama"]["speedup_vs_llama"]) == 1.0
    bound = {name: float(row["bytes_bound_vs_llama"]) for name, row in rows.items()}
    assert bound["llama"] == 1.0 < bound["mtla_s1"] and bound["mtla_s2"] == 2 * bound["mtla_s1"]
    assert all(float(row["seconds"]) > 0 for row in rows.values())
    # each decode step clocked by itself: positive, the 90th percentile not below the median
    assert all(0 < float(row["step_ms_median"]) <= float(row["step_ms_p90"])
               for row in rows.values())


def test_step_clock_brackets_each_decode_step():
    """The clock notes a time per new token, so n tokens give n - 1 decode steps."""
    from transformers import LlamaConfig, LlamaForCausalLM, StoppingCriteriaList

    from espnet2_mtla.benchmark.generation import TINY_LLAMA, StepClock

    model = LlamaForCausalLM(LlamaConfig(**TINY_LLAMA, pad_token_id=0)).eval()
    clock = StepClock(torch.device("cpu"))
    out = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=5, min_new_tokens=5,
                         do_sample=False, eos_token_id=None, pad_token_id=0,
                         stopping_criteria=StoppingCriteriaList([clock]))
    assert out.shape[1] == 3 + 5
    steps = clock.step_ms()
    assert len(steps) == 4 and all(ms > 0 for ms in steps)


def test_generate_section_feeds_the_prompt_in_chunks(tmp_path):
    """--prefill_chunk_size with several values: a row per value and subject, the value
    in its column (0: the prompt at once)."""
    main(["--tiny", "--device", "cpu", "--dtype", "float32", "--out", str(tmp_path),
          "--sections", "generate", "--generate_subjects", "llama", "mtla_s2",
          "--prefill_chunk_size", "0", "7"])
    rows = list(csv.DictReader(open(tmp_path / "generate.csv")))
    assert sorted((row["subject"], row["prefill_chunk"]) for row in rows) == [
        ("llama", "0"), ("llama", "7"), ("mtla_s2", "0"), ("mtla_s2", "7")]
