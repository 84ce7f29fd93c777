"""The decoder-only model and its batched beam search (CPU, tiny models)."""

import pytest
import torch

from espnet2_mtla.inference.beam_search import BatchBeamSearch
from speech_fixtures import TRANSCRIPTS, speech_batch, tiny_model

KEYS = sorted(TRANSCRIPTS)
MAX_TOKENS = 16


def train(model, batch, steps, lr=5e-3):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss, _, _ = model(**batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return loss.item()


def references(batch):
    return [row[:length].tolist() for row, length in zip(batch["text"], batch["text_lengths"])]


def single(batch, row):
    length = int(batch["speech_lengths"][row])
    return {
        "speech": batch["speech"][row : row + 1, :length],
        "speech_lengths": batch["speech_lengths"][row : row + 1],
    }


def greedy_without_cache(model, one_utterance, max_tokens):
    """Argmax decoding that re-runs the whole sequence every step (no cache)."""
    encoded = model.encode_prefix(one_utterance)
    prompt_block, prompt_lengths = model.prompts(one_utterance)
    prompt = prompt_block[0, : int(prompt_lengths[0])]
    tokens = []
    with torch.no_grad():
        for _ in range(max_tokens):
            text_in = torch.cat([prompt, torch.tensor(tokens, dtype=torch.long)])[None]
            logits = model.text_logits(encoded, text_in, torch.tensor([text_in.shape[1]]))
            best = int(logits[0, -1].argmax())
            if best == model.eos:
                break
            tokens.append(best)
    return tokens


@pytest.mark.parametrize("prefix_mode", ["memory", "full"])
@pytest.mark.parametrize("attention", ["mha", "mqa", "gqa", "mla", "mtla"])
def test_tiny_model_overfits_until_greedy_reproduces_transcripts(attention, prefix_mode):
    batch = speech_batch(KEYS)
    model = tiny_model(attention, prefix_mode)
    search = BatchBeamSearch(model, beam_size=1, maxlenratio=-MAX_TOKENS)
    hypotheses = None
    for _ in range(24):  # at most 600 steps
        train(model, batch, 25)
        results, _ = search.search(batch)
        hypotheses = [result[0].tokens for result in results]
        if hypotheses == references(batch):
            break
    assert hypotheses == references(batch)


@pytest.fixture(scope="module", params=[("mtla", "memory", True), ("mha", "full", True),
                                        ("mla", "memory", True), ("mtla", "full", False)],
                ids=["mtla-memory", "mha-full", "mla-memory", "mtla-full-unmerged_prefix"])
def partly_trained(request):
    """A model trained a little: confident enough to stop, not perfect."""
    attention, prefix_mode, merge_prefix = request.param
    model = tiny_model(attention, prefix_mode, seed=1, merge_prefix=merge_prefix)
    train(model, speech_batch(KEYS), 40)
    return model


def test_beam_size_one_equals_greedy(partly_trained):
    model = partly_trained
    batch = speech_batch(KEYS)
    results, _ = BatchBeamSearch(model, beam_size=1, maxlenratio=-MAX_TOKENS).search(batch)
    for row, result in enumerate(results):
        assert result[0].tokens == greedy_without_cache(model, single(batch, row), MAX_TOKENS)


def test_alone_equals_in_batch_and_cached_scores_equal_full_recompute(partly_trained):
    model = partly_trained
    batch = speech_batch(KEYS)  # 5 utterances of different lengths
    search = BatchBeamSearch(model, beam_size=3, nbest=3, maxlenratio=-MAX_TOKENS)
    batched, stats = search.search(batch)
    assert stats.peak_cache_bytes > 0
    for row in range(len(KEYS)):
        alone, _ = search.search(single(batch, row))
        assert [h.tokens for h in alone[0]] == [h.tokens for h in batched[row]]
        for hyp_alone, hyp_batched in zip(alone[0], batched[row]):
            assert abs(hyp_alone.score - hyp_batched.score) < 1e-4
        hypotheses = [torch.tensor(h.tokens, dtype=torch.long) for h in batched[row]]
        repeated = {k: v.repeat(len(hypotheses), *[1] * (v.dim() - 1))
                    for k, v in single(batch, row).items()}  # one row per hypothesis
        recomputed = model.sequence_log_probs(repeated, hypotheses)
        assert len(recomputed) == len(batched[row]) == 3
        for hyp, score in zip(batched[row], recomputed.tolist()):
            assert abs(hyp.score - score) < 1e-4
        normalized = [h.normalized_score for h in batched[row]]
        assert normalized == sorted(normalized, reverse=True)


def test_static_caches_with_riding_rows_give_the_same_search(partly_trained):
    """cuda_graphs=True on the CPU: static caches, done utterances ride along in the
    batch until at most half are alive (no capture off CUDA): same n-best lists."""
    model = partly_trained
    batch = speech_batch(KEYS)
    eager = BatchBeamSearch(model, beam_size=3, nbest=3, maxlenratio=-MAX_TOKENS,
                            cuda_graphs=False)
    static = BatchBeamSearch(model, beam_size=3, nbest=3, maxlenratio=-MAX_TOKENS,
                             cuda_graphs=True)
    expected, _ = eager.search(batch)
    got, _ = static.search(batch)
    assert len({len(h[0].tokens) for h in expected}) > 1  # utterances finish at different steps
    for row in range(len(KEYS)):
        assert [h.tokens for h in got[row]] == [h.tokens for h in expected[row]]
        for a, b in zip(got[row], expected[row]):
            assert abs(a.score - b.score) < 1e-4


def test_length_limits_are_respected():
    model = tiny_model("mtla", "memory", seed=2)
    batch = speech_batch(KEYS[:2])
    results, _ = BatchBeamSearch(model, beam_size=2, maxlenratio=-3, nbest=2).search(batch)
    assert all(len(h.tokens) <= 3 for result in results for h in result)
    results, _ = BatchBeamSearch(model, beam_size=2, maxlenratio=-6, minlenratio=0.1).search(
        batch
    )
    prefix_lengths = model.encode_prefix(batch).lengths
    for result, length in zip(results, prefix_lengths.tolist()):
        assert all(len(h.tokens) >= int(0.1 * length) for h in result)


def test_text_prefix_model_for_summarisation():
    """input_type text: the prefix is the embedded src_text."""
    from speech_fixtures import tiny_args
    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask

    args = tiny_args("mtla", "full")
    args.model_conf = {"lsm_weight": 0.0, "input_type": "text"}
    torch.manual_seed(0)
    model = DecoderOnlyTask.build_model(args)
    assert model.encoder is None and model.frontend is None
    batch = speech_batch(KEYS)
    # the source of each summary: its target reversed
    sources = [batch["text"][i, : batch["text_lengths"][i]].flip(0) for i in range(len(KEYS))]
    text_batch = {
        "src_text": torch.nn.utils.rnn.pad_sequence(sources, True, -1),
        "src_text_lengths": batch["text_lengths"],
        "text": batch["text"],
        "text_lengths": batch["text_lengths"],
    }
    for _ in range(24):
        train(model, text_batch, 25)
        results, _ = BatchBeamSearch(model, beam_size=1, maxlenratio=-MAX_TOKENS).search(
            text_batch
        )
        if [r[0].tokens for r in results] == references(batch):
            break
    assert [r[0].tokens for r in results] == references(batch)


def test_teacher_forcing_lays_out_each_row_as_prompt_then_text_then_eos():
    """The batched layout equals [prompt; y] / [ignore..; y; eos] built row by row, for
    prompts of different lengths, an empty target and -1 padding in both blocks."""
    model = tiny_model("mtla", "memory")
    ignore, eos = model.ignore_id, model.eos
    prompts = [[5, 6, 7], [8], [9, 10]]
    targets = [[11, 12], [13, 14, 15, 16], []]
    pad = torch.nn.utils.rnn.pad_sequence
    inputs, outputs, lengths = model.teacher_forcing(
        pad([torch.tensor(p) for p in prompts], True, -1), torch.tensor([3, 1, 2]),
        pad([torch.tensor(t, dtype=torch.long) for t in targets], True, -1),
        torch.tensor([2, 4, 0]),
    )
    width = max(len(p) + len(t) for p, t in zip(prompts, targets))
    for row, (prompt, target) in enumerate(zip(prompts, targets)):
        expected_in = prompt + target
        expected_out = [ignore] * (len(prompt) - 1) + target + [eos]
        assert inputs[row].tolist() == expected_in + [0] * (width - len(expected_in))
        assert outputs[row].tolist() == expected_out + [ignore] * (width - len(expected_out))
        assert int(lengths[row]) == len(expected_in)
    assert inputs.shape == outputs.shape == (3, width)


def test_prompt_tokens_select_the_task():
    """One model, two tasks by prompt: <asr> -> transcript, <rev> -> it reversed."""
    from speech_fixtures import token_list

    tokens = token_list()
    keys = KEYS[:3]
    batch = speech_batch(keys)
    both = {name: torch.cat([value, value]) for name, value in batch.items()}
    refs = references(batch)
    both_refs = refs + [ref[::-1] for ref in refs]
    both["text"] = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(ref) for ref in both_refs], batch_first=True, padding_value=-1
    )
    both["prompt"] = torch.tensor([[tokens.index("<asr>")]] * 3 + [[tokens.index("<rev>")]] * 3)
    both["text_lengths"] = torch.tensor([len(ref) for ref in both_refs])
    both["prompt_lengths"] = torch.ones(6, dtype=torch.long)
    model = tiny_model("mtla", "memory", seed=3)
    search = BatchBeamSearch(model, beam_size=1, maxlenratio=-MAX_TOKENS)
    for _ in range(24):
        train(model, both, 25)
        hypotheses = [result[0].tokens for result in search.search(both)[0]]
        if hypotheses == both_refs:
            break
    assert hypotheses == both_refs


def test_preprocessor_prompts_and_empty_text(tmp_path):
    from speech_fixtures import token_list
    from espnet2_mtla.tasks.decoder_only import DecoderOnlyPreprocessor

    tokens = token_list()
    pre = DecoderOnlyPreprocessor(train=False, token_type="char", token_list=tokens)
    out = pre("utt9", {"text": "hello", "prompt": "<asr> <rev>", "src_text": "abc"})
    assert out["prompt"].tolist() == [tokens.index("<asr>"), tokens.index("<rev>")]
    assert out["text"].tolist() == [tokens.index(c) for c in "hello"]
    assert out["src_text"].tolist() == [tokens.index(c) for c in "abc"]
    with pytest.raises(ValueError, match="utt9.*<de>"):
        pre("utt9", {"text": "hello", "prompt": "<de>"})
    with pytest.raises(ValueError, match="utt9.*empty transcript"):
        pre("utt9", {"text": ""})


def test_ctc_on_the_encoder_is_part_of_the_loss():
    from speech_fixtures import tiny_args
    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask

    args = tiny_args("mla", "memory")
    args.model_conf = {"lsm_weight": 0.0, "ctc_weight": 0.3}
    torch.manual_seed(0)
    model = DecoderOnlyTask.build_model(args)
    loss, stats, weight = model(**speech_batch(KEYS))
    assert model.ctc is not None and "loss_ctc" in stats
    expected = 0.7 * stats["loss_att"] + 0.3 * stats["loss_ctc"]
    assert torch.allclose(loss.detach(), expected) and weight == len(KEYS)
    loss.backward()
    assert model.ctc.ctc_lo.weight.grad.abs().sum() > 0


def test_bf16_decoding_matches_fp32_hypotheses(partly_trained):
    import copy

    batch = speech_batch(KEYS)
    search = BatchBeamSearch(partly_trained, beam_size=2, maxlenratio=-MAX_TOKENS)
    exact, _ = search.search(batch)
    model = copy.deepcopy(partly_trained).to(torch.bfloat16)
    model.frontend.float()  # as the inference CLI does
    low, stats = BatchBeamSearch(model, beam_size=2, maxlenratio=-MAX_TOKENS).search(batch)
    assert stats.peak_cache_bytes > 0
    agree = sum(a[0].tokens == b[0].tokens for a, b in zip(exact, low))
    assert agree >= 4  # bf16 may flip a near tie, not the decoding as a whole


@pytest.mark.parametrize(
    "encoder, encoder_conf",
    [
        ("transformer", {"output_size": 32, "attention_heads": 2, "linear_units": 64,
                         "num_blocks": 1, "input_layer": "conv2d"}),
        ("conformer", {"output_size": 32, "attention_heads": 2, "linear_units": 64,
                       "num_blocks": 1, "input_layer": "conv2d", "cnn_module_kernel": 7}),
        ("e_branchformer", {"output_size": 32, "attention_heads": 2, "linear_units": 64,
                            "cgmlp_linear_units": 64, "num_blocks": 1, "input_layer": "conv2d",
                            "cgmlp_conv_kernel": 7}),
        ("linear", {"output_size": 32, "input_layer": "linear"}),
    ],
)
def test_every_speech_encoder_choice_trains_and_decodes(encoder, encoder_conf):
    from speech_fixtures import tiny_args
    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask

    args = tiny_args("mtla", "memory", encoder=encoder, encoder_conf=encoder_conf)
    torch.manual_seed(0)
    model = DecoderOnlyTask.build_model(args)
    batch = speech_batch(KEYS[:3])
    loss = train(model, batch, 2)
    assert loss == loss  # finite, not NaN
    results, _ = BatchBeamSearch(model, beam_size=2, maxlenratio=-4).search(batch)
    assert len(results) == 3 and all(len(r[0].tokens) <= 4 for r in results)


@pytest.mark.parametrize("prefix_mode", ["memory", "full"])
def test_unmerged_prefix_keeps_one_cache_entry_per_prefix_frame(prefix_mode):
    """merge_prefix false: after the prefill, row b holds L_b prefix entries plus the
    prompt's chunks of s; merged (the default) the prefix is in chunks of s too."""
    from espnet2_mtla.model.decoder import unmerged_prefix_positions

    batch = speech_batch(KEYS)
    counts = {}
    for merge_prefix in (True, False):
        model = tiny_model("mtla", prefix_mode, merge_prefix=merge_prefix).eval()
        with torch.no_grad():
            encoded = model.encode_prefix(batch)
            caches, _ = model.start_decoding(encoded, model.prompts(batch), max_new_tokens=4)
        counts[merge_prefix] = caches[0].num_entries.tolist()
        assert caches[0].max_entries >= max(counts[merge_prefix])  # reads span them all
    lengths = encoded.lengths.tolist()
    assert len(set(lengths)) > 1  # left padding in play
    down_rate = 2
    for length, merged, unmerged in zip(lengths, counts[True], counts[False]):
        assert unmerged == length + 1  # the prompt: one task token, a chunk of its own
        assert merged == -(-(length + 1) // down_rate)
    # the mapping itself: stride 1 changes nothing; the text starts a chunk
    positions = torch.tensor([[0, 0, 1, 2, 3], [0, 1, 2, 3, 4]])
    padding = torch.tensor([[True, False, False, False, False], [False] * 5])
    assert torch.equal(unmerged_prefix_positions(positions, padding, 3, 1), positions)
    mapped = unmerged_prefix_positions(positions, padding, 3, 2)
    assert mapped.tolist() == [[1, 1, 3, 4, 5], [1, 3, 5, 6, 7]]


def test_merge_prefix_must_be_a_boolean():
    from espnet2_mtla.model.decoder import DecoderOnlyStack

    with pytest.raises(ValueError, match="merge_prefix"):
        DecoderOnlyStack(10, d_model=16, num_heads=2, num_layers=1, ffn_dim=16,
                         merge_prefix="no")


@pytest.mark.parametrize("attention,merge_prefix,down_rate,cuda_graphs,prefix_mode",
                         [("mla", True, 1, False, "full"), ("mtla", True, 2, False, "full"),
                          ("mtla", True, 3, True, "full"), ("mtla", True, 4, False, "full"),
                          ("mtla", False, 2, True, "full"), ("mtla", True, 2, False, "memory"),
                          ("mha", True, 1, False, "full"), ("mha", True, 1, True, "memory"),
                          ("mqa", True, 1, False, "full"), ("gqa", True, 1, True, "full")])
def test_shared_prefix_search_equals_the_unshared(attention, merge_prefix, down_rate,
                                                  cuda_graphs, prefix_mode):
    """share_prefix: the same n-best lists and scores (1e-4) as copying the prefix into
    every beam, for every attention type, in a batch of prefixes of different lengths (not
    all divisible by s) and alone; the batch shrinks as utterances finish (static caches:
    they ride along)."""
    from speech_fixtures import tiny_args
    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask

    torch.manual_seed(1)
    args = tiny_args(attention, prefix_mode, merge_prefix)
    if attention == "mtla":
        args.attention_conf["down_rate"] = down_rate
    model = DecoderOnlyTask.build_model(args)
    batch = speech_batch(KEYS)
    train(model, batch, 30)
    # prompts of one or two task tokens: prefills of both parities end mid-chunk
    prompt_lengths = torch.tensor([1, 2, 1, 2, 1])
    batch["prompt"] = torch.full((len(KEYS), 2), model.task_token_id)
    batch["prompt_lengths"] = prompt_lengths
    options = dict(beam_size=3, nbest=3, maxlenratio=-MAX_TOKENS, cuda_graphs=cuda_graphs)
    expected, expected_stats = BatchBeamSearch(model, **options).search(batch)
    shared_search = BatchBeamSearch(model, share_prefix=True, **options)
    got, stats = shared_search.search(batch)
    prefill = model.encode_prefix(batch).lengths + prompt_lengths
    if merge_prefix and down_rate > 1:  # (unmerged: the prompt opens a chunk after any prefix)
        assert bool((prefill % down_rate != 0).any())  # a prefill ends mid-chunk
    assert len({len(h[0].tokens) for h in expected}) > 1  # utterances end at different steps
    for row in range(len(KEYS)):
        assert [h.tokens for h in got[row]] == [h.tokens for h in expected[row]]
        for a, b in zip(got[row], expected[row]):
            assert abs(a.score - b.score) < 1e-4
    assert stats.peak_cache_bytes < expected_stats.peak_cache_bytes  # the prefix held once
    # the default (None) shares only where the step is graphed by default: not on the CPU
    assert stats.shared_prefix and not expected_stats.shared_prefix
    one = dict(single(batch, 1), prompt=batch["prompt"][1:2], prompt_lengths=prompt_lengths[1:2])
    alone, _ = shared_search.search(one)
    assert [h.tokens for h in alone[0]] == [h.tokens for h in expected[1]]


def test_shared_prefix_refuses_a_cache_without_a_shared_form():
    from espnet2_mtla.attention.shared_prefix import shared_prefix_cache, supports_shared_prefix

    assert not supports_shared_prefix(object())
    with pytest.raises(TypeError, match="no shared-prefix form of object"):
        shared_prefix_cache(object(), 2, 4)
