"""Beam search with the decoding step replayed from CUDA graphs (GPU only; the static
caches it relies on are checked on the CPU in test_model_decoding.py).

Uses the benchmark's random-weight model (no espnet import), small, in fp32: the graph
replay must give the eager search's hypotheses and scores, while utterances of different
lengths finish at different steps (done rows ride along, then the batch shrinks).
"""

import pytest
import torch

from espnet2_mtla.benchmark.subjects import BenchModel
from espnet2_mtla.benchmark.variants import TINY_SIZES, VARIANTS, at_size
from espnet2_mtla.inference.beam_search import BatchBeamSearch
from espnet2_mtla.inference.cuda_graph import DecodeStep, GraphedDecodeStep

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def tiny_model_and_batch(variant):
    """The benchmark's random-weight model at tiny sizes on the GPU, a batch of six
    prefixes of different lengths, and the variant's attention_conf."""
    attention, conf = at_size(VARIANTS, tiny=True)[variant]
    torch.manual_seed(0)
    model = BenchModel(attention, conf, TINY_SIZES, TINY_SIZES["vocab"]).cuda().eval()
    lengths = torch.tensor([12, 7, 20, 3, 15, 9], device="cuda")
    batch = {"speech": torch.randn(6, 20, 80, device="cuda"), "speech_lengths": lengths}
    return model, batch, conf


@pytest.mark.parametrize("variant", ["mha", "gqa2", "mla", "mtla_s2", "mtla_s3"])
def test_shared_prefix_graph_replay_equals_the_unshared_eager_search(variant):
    """The shared-prefix step captured and replayed (and recaptured as the batch
    shrinks) gives the unshared eager search's hypotheses."""
    model, batch, _ = tiny_model_and_batch(variant)
    eager, _ = BatchBeamSearch(model, beam_size=4, nbest=4, cuda_graphs=False).search(batch)
    shared, stats = BatchBeamSearch(model, beam_size=4, nbest=4, cuda_graphs=True,
                                    share_prefix=True).search(batch)
    assert stats.graph_replays > 10 and stats.graph_captures >= 2
    for got, want in zip(shared, eager):
        assert [h.tokens for h in got] == [h.tokens for h in want]
        for a, b in zip(got, want):
            assert abs(a.score - b.score) < 1e-3


@pytest.mark.parametrize("variant", ["mha", "mla", "mtla_s2"])
def test_the_default_search_shares_the_prefix_where_it_graphs_the_step(variant):
    """share_prefix None: latent caches on CUDA (graphed by default) hold the prefix once,
    MHA and an explicitly eager search do not; the hypotheses are the unshared ones."""
    model, batch, conf = tiny_model_and_batch(variant)
    eager, eager_stats = BatchBeamSearch(model, beam_size=4, nbest=4, cuda_graphs=False).search(batch)
    default, stats = BatchBeamSearch(model, beam_size=4, nbest=4).search(batch)
    assert not eager_stats.shared_prefix
    assert stats.shared_prefix == ("kv_lora_rank" in conf)
    assert (stats.graph_replays > 0) == ("kv_lora_rank" in conf)
    for got, want in zip(default, eager):
        assert [h.tokens for h in got] == [h.tokens for h in want]
        for a, b in zip(got, want):
            assert abs(a.score - b.score) < 1e-3


@pytest.mark.parametrize("variant", ["mha", "gqa2", "mla", "mtla_s2", "mtla_s3"])
def test_graph_replay_equals_eager_search(variant):
    model, batch, conf = tiny_model_and_batch(variant)
    # max output length = prefix length: rows finish at different steps
    eager, _ = BatchBeamSearch(model, beam_size=4, nbest=4, cuda_graphs=False).search(batch)
    graphed, stats = BatchBeamSearch(model, beam_size=4, nbest=4, cuda_graphs=True).search(batch)
    assert stats.graph_replays > 10  # most steps came from graphs
    # the batch shrank at least once: a first capture and a recapture, both timed
    assert stats.graph_captures >= 2 and stats.capture_seconds > 0
    if "kv_lora_rank" in conf:  # graphs are the default for latent caches
        auto = BatchBeamSearch(model, beam_size=4, nbest=4).search(batch)[1]
        assert auto.graph_replays == stats.graph_replays
    for got, want in zip(graphed, eager):
        assert [h.tokens for h in got] == [h.tokens for h in want]
        for a, b in zip(got, want):
            assert abs(a.score - b.score) < 1e-3



@pytest.mark.parametrize("variant", ["mha", "mtla_s2"])
@pytest.mark.parametrize("shrink_before_last", [1, 0])
def test_recapture_on_the_last_steps_fits_the_static_cache(variant, shrink_before_last):
    """Rows that leave the batch on the last steps, where the caches are (nearly) full:
    with room for one more step the new cycle of graphs is captured without counting
    the captured (not run) steps as held; with none, nothing is captured. Both raised
    'static KVCache is full' (the EOS-terminated benchmark, whose hypotheses end at
    different steps). The graphed steps give the eager ones."""
    model, batch, _ = tiny_model_and_batch(variant)
    steps = 6  # the caches hold exactly these
    shrink = steps - 1 - shrink_before_last

    @torch.no_grad()
    def decode(step_class):
        caches, log_probs = model.start_decoding(
            model.encode_prefix(batch), model.prompts(batch), max_new_tokens=steps)
        step = step_class(model, caches)
        rows = torch.arange(6, device=log_probs.device)
        outputs = []
        for n in range(steps):  # from step `shrink` on, 4 of the 6 rows: a new batch size
            source = rows if n < shrink else rows[:4]
            tokens = log_probs[source].argmax(-1)
            log_probs = step(source, tokens).clone()
            outputs.append(log_probs)
        return outputs, step

    eager, _ = decode(DecodeStep)
    graphed, step = decode(GraphedDecodeStep)
    # captured at the first step, and at the shrink unless the caches were full then
    assert step.captures == 1 + shrink_before_last
    assert step.replays == steps - 2
    for got, want in zip(graphed, eager):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_one_graph_serves_every_step_and_writes_one_output_buffer():
    """The reorder moves rows in place (the buffers keep their storage), so one graph is
    captured per batch size and replayed every step, writing the step's log-probs into
    one buffer made outside the graph's pool."""
    model, batch, _ = tiny_model_and_batch("mtla_s2")
    with torch.no_grad():
        caches, log_probs = model.start_decoding(
            model.encode_prefix(batch), model.prompts(batch), max_new_tokens=8)
        step = GraphedDecodeStep(model, caches)
        rows = torch.arange(6, device="cuda")
        storage = [cache.entries.data_ptr() for cache in caches]
        tokens = log_probs.argmax(-1)
        step(rows, tokens.roll(1))  # eager at this batch size, then the graph is captured
        outputs = [step(rows.flip(0), tokens) for _ in range(3)]  # rows do move
    assert step.captures == 1 and step.replays == 3
    assert {out.data_ptr() for out in outputs} == {step.log_probs.data_ptr()}
    assert [cache.entries.data_ptr() for cache in caches] == storage
