"""Fairseq-style batched beam search over the decoder-only model.

Many utterances x ``beam_size`` hypotheses run as one batch. Every step: log-probs of
all rows; per utterance the best 2K (K = beam size) continuations of its K beams; those
ending in eos among the best K are finished hypotheses (score / length^length_penalty);
the best K others continue; the caches are reordered by their back-pointers with one
gather per layer. An utterance is done once it has K finished hypotheses or reaches its
maximum length, and its rows leave the batch. One that stops with no finished hypothesis
(none could end: e.g. CTC cannot align any hypothesis of that length) returns its best
unfinished one, marked ``ended=False``, so every utterance gets an output. Each
utterance's prefix is encoded on its own, so decoding it alone or in any batch gives the
same result.

Joint CTC/attention decoding (``ctc_weight`` w > 0, ESPnet's ``ctc_weight``): a candidate
scores (1 - w) * decoder log-prob + w * CTC prefix score increment (ctc_prefix.py). As in
ESPnet's batched search, the CTC score is computed for the ``pre_beam`` best tokens of each
hypothesis by the decoder (1.5 x beam; all tokens when w = 1), the others are out.

On CUDA with latent caches (MLA, MTLA) the step (reorder + decoder) is replayed from
CUDA graphs (``cuda_graphs``; see cuda_graph.py). A captured step has a fixed batch
size, so there the rows of done utterances stay in the batch (fed eos, ignored) until
at most half the rows are alive; then the batch shrinks and the step is captured again.

The host never waits for the device between steps: each step's endings (which of the
best K end in eos, with their scores and beams) are copied back without blocking and
handled while the next step runs, so a group that they complete (K finished) is fed one
step more and that step's output is ignored; finished hypotheses keep their tokens on the
device until the search ends (one read per step that finished some).
"""

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch

from espnet2_mtla.attention.shared_prefix import shared_prefix_cache, supports_shared_prefix
from espnet2_mtla.inference.ctc_prefix import CTCPrefixScorer
from espnet2_mtla.inference.cuda_graph import DecodeStep, GraphedDecodeStep, prefers_cuda_graphs
from espnet2_mtla.model.prefix_lm import EncodedPrefix, left_aligned


@dataclass
class Hypothesis:
    tokens: List[int]  # y_1..y_n, without eos
    score: float  # sum of log-probabilities of y_1..y_n and eos
    normalized_score: float  # score / (n + 1) ** length_penalty: the ranking key
    ended: bool = True  # False: no hypothesis ended in eos; the best unfinished one


@dataclass
class SearchStats:
    generated_tokens: int = 0  # tokens of the returned best hypotheses (eos included)
    steps: int = 0
    peak_cache_bytes: int = 0  # largest total KV-cache size over all layers (host bound)
    graph_replays: int = 0  # steps replayed from a CUDA graph
    graph_captures: int = 0  # graphs captured (one per batch size met)
    capture_seconds: float = 0.0  # host time spent capturing them
    shared_prefix: bool = False  # the prefix was held once per utterance (share_prefix)


def read_back(*tensors: torch.Tensor):
    """Host copies of ``tensors``, started without waiting for the device; returns a
    function that waits for them and gives them (on CUDA: pinned buffers and an event, so
    work queued after the copies keeps the GPU busy meanwhile)."""
    if tensors[0].device.type != "cuda":
        return lambda: tensors
    copies = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
    for copy, tensor in zip(copies, tensors):
        copy.copy_(tensor, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()

    def wait():
        copied.synchronize()
        return copies

    return wait


def encode_each(model, batch: Dict[str, torch.Tensor]):
    """``model.encode_prefix`` utterance by utterance: the prefix stacked left-padded, the
    encoder output (for CTC; None for text input) right-padded, as encode_prefix gives."""
    name = model.prefix_input_name
    outputs = []
    for row in range(len(batch[name])):
        length = batch[f"{name}_lengths"][row : row + 1]
        single = {name: batch[name][row : row + 1, : int(length)], f"{name}_lengths": length}
        outputs.append(model.encode_prefix(single))
    lengths = torch.cat([out.lengths for out in outputs])
    # each prefix is (1, its length, D): right-padded together, then moved to the right
    stacked = torch.nn.utils.rnn.pad_sequence([out.prefix[0] for out in outputs], batch_first=True)
    prefix, padding, positions = left_aligned(stacked, lengths)
    encoded = encoded_lengths = None
    if outputs[0].encoded is not None:
        encoded = torch.nn.utils.rnn.pad_sequence(
            [out.encoded[0, : int(out.encoded_lengths[0])] for out in outputs], batch_first=True)
        encoded_lengths = torch.cat([out.encoded_lengths for out in outputs])
    return EncodedPrefix(prefix, padding, positions, lengths, encoded, encoded_lengths)


class BatchBeamSearch:
    """Batched beam search; ``search(batch)`` returns the n-best lists and statistics."""

    def __init__(
        self,
        model,  # a PrefixLM (e.g. ESPnetDecoderOnlyModel)
        beam_size: int = 5,
        maxlenratio: float = 0.0,
        minlenratio: float = 0.0,
        length_penalty: float = 1.0,
        nbest: int = 1,
        cuda_graphs: Optional[bool] = None,
        encode_batched: bool = False,
        ctc_weight: float = 0.0,
        pre_beam_ratio: float = 1.5,
        share_prefix: Optional[bool] = None,
    ):
        """cuda_graphs: replay the decoding step from a CUDA graph; None: on CUDA with
        latent caches (MLA, MTLA), where it pays; True also for per-token KV caches.
        encode_batched: encode all prefixes in one call (faster; results then depend on
        the batch at rounding level) instead of one utterance at a time.
        ctc_weight: weight of the CTC prefix score (0: attention only, 1: CTC only); needs
        a model trained with CTC. pre_beam_ratio: CTC scores the pre_beam_ratio x
        beam_size best tokens of the decoder per hypothesis (w < 1).
        The CTC part runs eagerly between the decoder's (possibly graphed) steps.
        share_prefix: keep each utterance's prefilled prefix once for its beams, never
        reordered (``attention.shared_prefix``: every attention type); the same
        hypotheses. None: where the step is graphed by default (latent caches on CUDA),
        where it was measured to pay (less memory always, mostly faster: README); True
        also for per-token KV caches (less memory, slower eager steps)."""
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        if nbest < 1 or nbest > beam_size:
            raise ValueError(f"nbest must be in 1..beam_size ({beam_size}), got {nbest}")
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
        if ctc_weight > 0 and getattr(model, "ctc", None) is None:
            raise ValueError(
                f"ctc_weight {ctc_weight}: the model has no CTC layer (trained without CTC: "
                "model_conf.ctc_weight 0, or text input); decode with ctc_weight 0")
        if pre_beam_ratio < 1.0:
            raise ValueError(f"pre_beam_ratio must be >= 1, got {pre_beam_ratio}")
        if share_prefix is True and not all(supports_shared_prefix(cache)
                                    for cache in model.decoder.make_caches(1)):
            raise ValueError("share_prefix: this model's caches have no shared-prefix form; "
                             "decode it without share_prefix")
        self.model = model
        self.share_prefix = share_prefix
        self.ctc_weight = ctc_weight
        self.pre_beam_ratio = pre_beam_ratio
        self.beam_size = beam_size
        self.maxlenratio = maxlenratio
        self.minlenratio = minlenratio
        self.length_penalty = length_penalty
        self.nbest = nbest
        self.cuda_graphs = cuda_graphs
        self.encode_batched = encode_batched

    def length_limits(self, prefix_lengths: torch.Tensor):
        """Max and min output lengths (tokens before eos) from the prefix lengths.

        maxlenratio > 0: ratio * prefix length; = 0: the prefix length; < 0: -ratio tokens.
        """
        lengths = prefix_lengths.tolist()
        if self.maxlenratio > 0:
            max_lens = [max(1, int(self.maxlenratio * n)) for n in lengths]
        elif self.maxlenratio == 0:
            max_lens = [max(1, n) for n in lengths]
        else:
            max_lens = [max(1, int(-self.maxlenratio))] * len(lengths)
        min_lens = [min(int(self.minlenratio * n), m) for n, m in zip(lengths, max_lens)]
        return max_lens, min_lens

    def ctc_scorer(self, encoded: EncodedPrefix) -> Optional[CTCPrefixScorer]:
        """The CTC prefix scorer over the encoder output, None without joint decoding."""
        if self.ctc_weight == 0:
            return None
        if encoded.encoded is None:
            raise ValueError("ctc_weight > 0 needs a speech encoder output (input_type speech)")
        log_probs = self.model.ctc.log_softmax(encoded.encoded).float()  # (N, T, V)
        return CTCPrefixScorer(log_probs, encoded.encoded_lengths, blank=self.model.blank_id,
                               eos=self.model.eos)

    def joint_scores(self, att: torch.Tensor, ctc: CTCPrefixScorer, state) -> torch.Tensor:
        """(1 - w) * att + w * CTC prefix score increments (R, V); tokens outside each row's
        pre-beam (the best of att) are -inf. att: (R, V) decoder log-probs, masked."""
        weight, vocab = self.ctc_weight, att.shape[1]
        pre_beam = vocab if weight == 1.0 else min(vocab, int(self.pre_beam_ratio * self.beam_size))
        if pre_beam < vocab:
            tokens = att.topk(pre_beam, dim=1).indices  # (R, P)
        else:
            tokens = torch.arange(vocab, device=att.device).expand(att.shape[0], -1)
        ctc_scores = ctc.score(state, tokens).to(att.dtype)  # (R, P)
        chosen = att.gather(1, tokens)
        if weight == 1.0:  # the decoder only masks (too short / too long)
            joint = ctc_scores.masked_fill(chosen == float("-inf"), float("-inf"))
        else:
            joint = (1 - weight) * chosen + weight * ctc_scores
        return torch.full_like(att, float("-inf")).scatter(1, tokens, joint)

    @torch.no_grad()
    def search(self, batch: Dict[str, torch.Tensor]):
        model, beam = self.model, self.beam_size
        eos = model.eos
        if self.encode_batched:
            encoded = model.encode_prefix(batch)
        else:
            encoded = encode_each(model, batch)
        max_lens, min_lens = self.length_limits(encoded.lengths)
        ctc = self.ctc_scorer(encoded)
        caches, log_probs = model.start_decoding(
            encoded, model.prompts(batch), max_new_tokens=max(max_lens) + 1
        )
        num_utts, vocab = log_probs.shape
        device = log_probs.device

        rows = torch.arange(num_utts, device=device).repeat_interleave(beam)  # (N * K)
        share = self.share_prefix
        if share is None:
            share = (self.cuda_graphs is not False and prefers_cuda_graphs(caches)
                     and all(map(supports_shared_prefix, caches)))
        if share:
            caches[:] = [shared_prefix_cache(cache, beam, max(max_lens) + 1) for cache in caches]
        else:
            for cache in caches:
                cache.reorder(rows)
        log_probs = log_probs[rows]
        ctc_state = ctc.initial_state(rows) if ctc is not None else None
        graphs = self.cuda_graphs
        if graphs is None:
            graphs = prefers_cuda_graphs(caches)
        step_fn = GraphedDecodeStep(model, caches) if graphs else DecodeStep(model, caches)
        stats = SearchStats(peak_cache_bytes=sum(cache.nbytes_bound() for cache in caches),
                            shared_prefix=share)
        min_len_of = torch.tensor(min_lens, device=device)  # per utterance
        max_len_of = torch.tensor(max_lens, device=device)
        scores = torch.full((num_utts, beam), float("-inf"), device=device)
        scores[:, 0] = 0.0  # at the first step only one beam is alive
        history = torch.zeros(num_utts * beam, 0, dtype=torch.long, device=device)
        batch_utts = list(range(num_utts))  # utterance of each group of K rows
        alive = [True] * num_utts  # per group: False once its utterance is done
        finished: List[List[Hypothesis]] = [[] for _ in range(num_utts)]
        unfilled = []  # (hypotheses, their tokens and scores still on the device)
        is_eos = torch.arange(vocab, device=device) == eos  # (V,)
        rank = torch.arange(2 * beam, device=device)
        step = 0
        utt_index = torch.arange(num_utts, device=device)  # batch_utts on the device
        while True:
            groups = len(batch_utts)
            candidates = log_probs.view(groups, beam, vocab)
            too_short = (step < min_len_of[utt_index])[:, None, None] & is_eos
            too_long = (step >= max_len_of[utt_index])[:, None, None] & ~is_eos  # force eos
            candidates = candidates.masked_fill(too_short | too_long, float("-inf"))
            if ctc is not None:
                candidates = self.joint_scores(candidates.view(-1, vocab), ctc, ctc_state)
                candidates = candidates.view(groups, beam, vocab)
            candidates = candidates + scores[:, :, None]
            top_scores, top_index = candidates.view(groups, -1).topk(2 * beam, dim=1)
            # (no (rows x vocab) tensor outlives its use: the step's temporaries peak next)
            candidates = log_probs = None
            top_beam = torch.div(top_index, vocab, rounding_mode="floor")  # (G, 2K)
            top_token = top_index % vocab
            # which of the best K end in eos: copied to the host without waiting, and
            # handled while the next step runs (no host-device round trip between steps)
            ends = (top_token[:, :beam] == eos) & torch.isfinite(top_scores[:, :beam])
            read_ends = read_back(ends, top_scores[:, :beam], top_beam[:, :beam])

            # the best K continuations that do not end
            order = torch.where(top_token == eos, rank + 2 * beam, rank).argsort(dim=1)
            keep = order[:, :beam]  # (G, K)
            next_scores = top_scores.gather(1, keep)
            next_beam = top_beam.gather(1, keep)
            next_token = top_token.gather(1, keep)

            step += 1
            stats.steps = step
            step_scores, step_history, step_utts = scores, history, batch_utts
            # groups fed the next step: this step's endings are not known yet, so a group
            # they complete (K finished) is fed one step more, and its endings ignored
            feeding = [alive[group] and step <= max_lens[utt]
                       for group, utt in enumerate(batch_utts)]
            fed = sum(feeding)
            if fed:
                if fed == groups or (graphs and fed > groups // 2):
                    kept = list(range(groups))  # (a graph's batch: done groups ride along)
                    kept_index = torch.arange(groups, device=device)
                else:  # the batch shrinks (host-to-device copies only then)
                    kept = [group for group in range(groups) if feeding[group]]
                    kept_index = torch.tensor(kept, device=device)
                    utt_index = utt_index[kept_index]
                    next_beam = next_beam[kept_index]
                    next_token = next_token[kept_index]
                    next_scores = next_scores[kept_index]
                if fed < len(kept):  # rows of done groups: keep their own rows, feed eos
                    dead = torch.tensor([not feeding[group] for group in kept], device=device)
                    own = torch.arange(beam, device=device).expand(len(kept), -1)
                    next_beam = torch.where(dead[:, None], own, next_beam)
                    next_token = next_token.masked_fill(dead[:, None], eos)
                    next_scores = next_scores.masked_fill(dead[:, None], float("-inf"))
                source = (kept_index[:, None] * beam + next_beam).flatten()  # back-pointers
                tokens = next_token.flatten()
                history = torch.cat([history[source], tokens[:, None]], dim=1)
                scores = next_scores
                log_probs = step_fn(source, tokens)
                if ctc is not None:
                    ctc_state = ctc.extend(ctc_state, source, tokens)
                cache_bytes = sum(cache.nbytes_bound() for cache in caches)  # no device sync
                stats.peak_cache_bytes = max(stats.peak_cache_bytes, cache_bytes)

            # this step's endings: finished hypotheses (their tokens gathered on the device)
            ends, end_scores, end_beams = read_ends()
            ended, rows = [], []
            for group, slot in ends.nonzero().tolist():
                utt = step_utts[group]
                if not alive[group] or len(finished[utt]) >= beam:
                    continue
                score = float(end_scores[group, slot])
                normalized = score / (step_history.shape[1] + 1) ** self.length_penalty
                ended.append(Hypothesis(None, score, normalized))
                finished[utt].append(ended[-1])
                rows.append(group * beam + int(end_beams[group, slot]))
            if ended:
                unfilled.append((ended, step_history[torch.tensor(rows, device=device)], None))
            for group, utt in enumerate(step_utts):
                stops = alive[group] and step > max_lens[utt]
                alive[group] = alive[group] and (
                    len(finished[utt]) < beam and step <= max_lens[utt]
                )
                if stops and not finished[utt]:  # nothing could end: the best beam
                    best = step_scores[group].argmax()  # of the step before eos was forced
                    finished[utt].append(Hypothesis(None, None, None, ended=False))
                    unfilled.append(([finished[utt][-1]], step_history[group * beam + best][None],
                                     step_scores[group, best][None]))
            if not any(alive):
                break
            batch_utts = [step_utts[group] for group in kept]
            alive = [alive[group] for group in kept]
        if graphs:
            stats.graph_replays = step_fn.replays
            stats.graph_captures, stats.capture_seconds = step_fn.captures, step_fn.capture_seconds
            step_fn.close()

        for hypotheses, tokens, hypothesis_scores in unfilled:  # (device reads, at the end)
            tokens = tokens.tolist()
            hypothesis_scores = None if hypothesis_scores is None else hypothesis_scores.tolist()
            for index, hypothesis in enumerate(hypotheses):
                hypothesis.tokens = tokens[index]
                if hypothesis_scores is not None:
                    hypothesis.score = hypothesis_scores[index]
                    hypothesis.normalized_score = hypothesis.score / (
                        len(hypothesis.tokens) + 1) ** self.length_penalty
        results = []
        for utt in range(num_utts):
            ranked = sorted(finished[utt], key=lambda hyp: -hyp.normalized_score)
            results.append(ranked[: self.nbest])
            if ranked:
                stats.generated_tokens += len(ranked[0].tokens) + 1
        return results, stats
