"""Joint CTC/attention beam search: the batched CTC prefix scorer against ESPnet's
per-hypothesis one, CTC-only search against a plain reference search, batch invariance."""

import numpy as np
import pytest
import torch
from espnet.nets.ctc_prefix_score import CTCPrefixScore

from espnet2_mtla.inference.beam_search import BatchBeamSearch
from espnet2_mtla.inference.ctc_prefix import CTCPrefixScorer
from speech_fixtures import TRANSCRIPTS, speech_batch, tiny_args
from test_model_decoding import single, train

KEYS = sorted(TRANSCRIPTS)
MAX_TOKENS = 16


def test_prefix_scores_equal_espnet_ctc_prefix_score():
    """Every token's prefix score (repeats, eos = whole sequence, blank excluded) for two
    utterances of different lengths in one batch equals ESPnet's CTCPrefixScore."""
    torch.manual_seed(0)
    vocab, frames, blank, eos = 7, 14, 0, 6
    log_probs = torch.randn(2, frames, vocab, dtype=torch.float64).log_softmax(-1)
    lengths = torch.tensor([14, 9])
    scorer = CTCPrefixScorer(log_probs, lengths, blank, eos)
    everything = torch.arange(vocab)[None]
    for utt in range(2):
        reference = CTCPrefixScore(log_probs[utt, : lengths[utt]].numpy(), blank, eos, np)
        ref_state, prefix = reference.initial_state(), [eos]  # ESPnet's y starts with sos
        state = scorer.initial_state(torch.tensor([utt]))
        for token in [3, 3, 2, 5, 5]:
            expected, ref_states = reference(prefix, np.arange(vocab), ref_state)
            got = (scorer.score(state, everything) + state.prefix_score[:, None])[0].numpy()
            assert got[blank] == -np.inf and expected[blank] < -1e9
            np.testing.assert_allclose(got[1:], expected[1:], rtol=0, atol=1e-5)  # (ESPnet: float32)
            ref_state, prefix = ref_states[token], prefix + [token]
            state = scorer.extend(state, torch.tensor([0]), torch.tensor([token]))


def ctc_model(seed=0, attention="mtla"):
    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask

    torch.manual_seed(seed)
    args = tiny_args(attention, "memory", model_conf={"lsm_weight": 0.0, "ctc_weight": 0.5})
    return DecoderOnlyTask.build_model(args)


@pytest.fixture(scope="module")
def trained_ctc_model():
    model = ctc_model()
    train(model, speech_batch(KEYS), 60)
    return model


@torch.no_grad()
def reference_ctc_search(model, utterance, beam, max_len):
    """Beam search over CTC prefix scores alone, one hypothesis at a time, with ESPnet's
    numpy CTCPrefixScore and the rules of BatchBeamSearch (best 2K candidates; eos among
    the best K finishes; stop at K finished or the length limit)."""
    prefix = model.encode_prefix(utterance)
    x = model.ctc.log_softmax(prefix.encoded)[0, : int(prefix.encoded_lengths[0])].double().numpy()
    vocab, eos = x.shape[1], model.eos
    scorer = CTCPrefixScore(x, model.blank_id, eos, np)
    hyps = [([], 0.0, 0.0, scorer.initial_state())]  # tokens, score, log psi, CTC state
    finished = []
    for step in range(max_len + 1):
        candidates = []
        for tokens, score, psi, state in hyps:
            prefix_scores, states = scorer([eos] + tokens, np.arange(vocab), state)
            for token in range(vocab):
                if token == model.blank_id or (step >= max_len and token != eos):
                    continue
                total = score + prefix_scores[token] - psi
                candidates.append((total, tokens, token, prefix_scores[token], states[token]))
        candidates.sort(key=lambda c: -c[0])
        candidates = candidates[: 2 * beam]
        for total, tokens, token, _, _ in candidates[:beam]:
            if token == eos and len(finished) < beam:
                finished.append((tokens, total))
        hyps = [(tokens + [token], total, psi, state)
                for total, tokens, token, psi, state in candidates if token != eos][:beam]
        if len(finished) >= beam:
            break
    finished.sort(key=lambda h: -h[1] / (len(h[0]) + 1))
    return finished


def test_ctc_weight_one_equals_a_reference_ctc_prefix_beam_search(trained_ctc_model):
    model = trained_ctc_model
    batch = speech_batch(KEYS)
    search = BatchBeamSearch(model, beam_size=3, nbest=3, maxlenratio=-MAX_TOKENS,
                             ctc_weight=1.0)
    results, _ = search.search(batch)
    assert any(result[0].tokens for result in results)  # CTC has learnt something
    for row, result in enumerate(results):
        expected = reference_ctc_search(model, single(batch, row), 3, MAX_TOKENS)
        assert [h.tokens for h in result] == [tokens for tokens, _ in expected[:3]]
        for hyp, (_, score) in zip(result, expected):
            assert abs(hyp.score - score) < 1e-4
        # with w = 1 a finished score is the CTC log-likelihood of the whole hypothesis
        with torch.no_grad():
            prefix = model.encode_prefix(single(batch, row))
            lengths = prefix.encoded_lengths
            log_probs = model.ctc.log_softmax(prefix.encoded).transpose(0, 1).double()
            best = result[0].tokens
            likelihood = -torch.nn.functional.ctc_loss(
                log_probs, torch.tensor([best]), lengths, torch.tensor([len(best)]),
                blank=model.blank_id, reduction="sum")
        assert abs(result[0].score - likelihood.item()) < 1e-4


@pytest.mark.parametrize("cuda_graphs", [False, True])  # True: static caches on the CPU
def test_joint_scores_alone_equal_in_a_batch(trained_ctc_model, cuda_graphs):
    model = trained_ctc_model
    batch = speech_batch(KEYS)  # 5 utterances of different lengths
    search = BatchBeamSearch(model, beam_size=3, nbest=3, maxlenratio=-MAX_TOKENS,
                             ctc_weight=0.3, cuda_graphs=cuda_graphs)
    batched, _ = search.search(batch)
    attention_only, _ = BatchBeamSearch(model, beam_size=3, nbest=3,
                                        maxlenratio=-MAX_TOKENS).search(batch)
    assert [[h.score for h in r] for r in batched] != [
        [h.score for h in r] for r in attention_only]  # the CTC scores count
    for row in range(len(KEYS)):
        alone, _ = search.search(single(batch, row))
        assert [h.tokens for h in alone[0]] == [h.tokens for h in batched[row]]
        for a, b in zip(alone[0], batched[row]):
            assert abs(a.score - b.score) < 1e-4


def test_joint_decoding_follows_the_better_scorer():
    """A model whose decoder is untrained but whose CTC is trained: attention-only
    decoding is lost, CTC-weighted decoding (a pre-beam of the whole vocabulary: the
    decoder's best tokens are no guide) finds the transcripts."""
    model = ctc_model(seed=3)
    batch = speech_batch(KEYS)
    for parameter in model.decoder.parameters():
        parameter.requires_grad_(False)
    model.ctc_weight = 1.0  # train the encoder and CTC only
    train(model, batch, 150, lr=1e-2)
    references = [row[:length].tolist() for row, length in zip(batch["text"], batch["text_lengths"])]
    joint, _ = BatchBeamSearch(model, beam_size=3, maxlenratio=-MAX_TOKENS,
                               ctc_weight=0.9, pre_beam_ratio=100).search(batch)
    attention, _ = BatchBeamSearch(model, beam_size=3, maxlenratio=-MAX_TOKENS).search(batch)
    assert [r[0].tokens for r in joint] == references
    assert [r[0].tokens for r in attention] != references


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_an_utterance_where_no_hypothesis_can_end_still_gets_its_best_one(
        trained_ctc_model, cuda_graphs):
    """With a minimum length beyond what CTC can align (2 tokens a frame), eos is out until
    every hypothesis scores -inf: the search returns each utterance's best beam of the step
    before, marked unfinished, instead of nothing (which lost the utterance's output)."""
    batch = speech_batch(KEYS)
    frames = trained_ctc_model.encode_prefix(batch).encoded_lengths.tolist()
    search = BatchBeamSearch(trained_ctc_model, beam_size=3, maxlenratio=2.5,
                             minlenratio=2.0, ctc_weight=0.5, cuda_graphs=cuda_graphs)
    results, _ = search.search(batch)
    usual, _ = BatchBeamSearch(trained_ctc_model, beam_size=3, maxlenratio=-MAX_TOKENS,
                               ctc_weight=0.5).search(batch)
    assert all(r[0].ended for r in usual)
    for result, n in zip(results, frames):
        assert len(result) == 1 and not result[0].ended
        assert n < len(result[0].tokens) <= int(2.5 * n)
        assert result[0].score == float("-inf")


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_bad_ctc_weights_are_rejected(trained_ctc_model, weight):
    with pytest.raises(ValueError, match="ctc_weight must be in"):
        BatchBeamSearch(trained_ctc_model, ctc_weight=weight)


def test_ctc_weight_needs_a_model_with_ctc():
    from speech_fixtures import tiny_model

    with pytest.raises(ValueError, match="trained without CTC"):
        BatchBeamSearch(tiny_model("mha", "memory"), ctc_weight=0.3)

