"""CTC prefix scores for joint CTC/attention beam search, batched over utterances x beams.

The algorithm is ESPnet's (Watanabe et al. 2017, "Hybrid CTC/attention architecture for
end-to-end speech recognition"; vectorised as in Seki et al. 2019): a hypothesis h
carries the forward probabilities of its prefix over the encoder frames,

    r^n_t(h): h emitted by frame t, the last frame non-blank (inside h's last token),
    r^b_t(h): h emitted by frame t, the last frame blank,

and the score of extending h by a token c is the CTC prefix probability
psi(h+c) = sum_t phi_{t-1}(h, c) x_t(c), with phi = r^n + r^b (only r^b when c repeats
h's last token; phi_{-1} = 1 for the empty h, else 0). Ending h (eos) scores the whole
sequence: r^n_{T-1}(h) + r^b_{T-1}(h). The beam search adds w * (log psi(h+c) - log
psi(h)) to (1 - w) * the decoder's log-probability.

Unlike ESPnet's ``CTCPrefixScoreTH`` this runs without a loop over frames or rows: the
recursions r^n_t = (r^n_{t-1} + phi_{t-1}) x_t(c) and r^b_t = (r^n_{t-1} + r^b_{t-1})
x_t(blank) are linear, so with the cumulative log-emissions L_t = sum_{u<=t} log x_u

    log r^n_t = L_t(c) + logcumsumexp_t'(log phi_{t'-1} - L_{t'-1}(c)),

and the same for r^b with the blank emissions. A step is a fixed handful of tensor
operations on fixed shapes (no host synchronisation); it runs eagerly between the
decoder's steps, outside any CUDA graph. The state is float64: the cumulative sums reach
thousands (nats) over long inputs, where float32 would lose the scores' last digits.

Every row's input is its own utterance's frames (padding excluded), so a hypothesis
scores the same alone or in any batch.
"""

from dataclasses import dataclass

import torch

NEG_INF = float("-inf")


def _shift_right(values: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """(..., T) -> (..., T): out[..., 0] = first, out[..., t] = values[..., t-1]."""
    return torch.cat([first[..., None], values[..., :-1]], dim=-1)


def _linear_recursion(entry: torch.Tensor, emission: torch.Tensor) -> torch.Tensor:
    """log r_t for r_t = (r_{t-1} + e_t) * x_t with r_{-1} = 0, in log space.

    entry: log e_t (..., T); emission: log x_t (..., T), finite. Returns log r (..., T).
    """
    cumulative = emission.cumsum(-1)  # L_t
    before = cumulative - emission  # L_{t-1} (L_{-1} = 0)
    return cumulative + torch.logcumsumexp(entry - before, dim=-1)


@dataclass
class CTCPrefixState:
    """Per row (hypothesis): forward probabilities of its prefix and its prefix score."""

    r_nonblank: torch.Tensor  # (R, T) log r^n_t(h)
    r_blank: torch.Tensor  # (R, T) log r^b_t(h)
    prefix_score: torch.Tensor  # (R,) log psi(h)
    last_token: torch.Tensor  # (R,) last token of h, -1 for the empty prefix
    utterance: torch.Tensor  # (R,) the utterance (row of CTCPrefixScorer.log_probs)

    def select(self, rows: torch.Tensor) -> "CTCPrefixState":
        return CTCPrefixState(*(field[rows] for field in (
            self.r_nonblank, self.r_blank, self.prefix_score, self.last_token,
            self.utterance)))


class CTCPrefixScorer:
    """CTC prefix scores of candidate tokens for many hypotheses of many utterances."""

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor, blank: int, eos: int):
        """log_probs: (N, T, V) CTC log-posteriors of N utterances; lengths: (N,) frames."""
        if log_probs.dim() != 3 or lengths.shape != log_probs.shape[:1]:
            raise ValueError(f"log_probs must be (N, T, V) with lengths (N,), got "
                             f"{tuple(log_probs.shape)} and {tuple(lengths.shape)}")
        num_utts, frames, _ = log_probs.shape
        self.blank, self.eos = blank, eos
        self.lengths = lengths.to(log_probs.device).long()
        valid = torch.arange(frames, device=log_probs.device)[None, :] < self.lengths[:, None]
        self.valid = valid  # (N, T)
        # frames past an utterance's end emit anything with probability 1: they change
        # nothing before them (the recursions run forward) and are never read
        self.log_probs = log_probs.double().masked_fill(~valid[:, :, None], 0.0)  # (N, T, V)

    def initial_state(self, utterance: torch.Tensor) -> CTCPrefixState:
        """The empty prefix for rows of the given utterances (R,)."""
        blank = self.log_probs[utterance, :, self.blank]  # (R, T)
        rows = len(utterance)
        return CTCPrefixState(
            r_nonblank=torch.full_like(blank, NEG_INF),
            r_blank=blank.cumsum(-1),
            prefix_score=blank.new_zeros(rows),
            last_token=torch.full((rows,), -1, dtype=torch.long, device=blank.device),
            utterance=utterance,
        )

    def _entry(self, state: CTCPrefixState, tokens: torch.Tensor) -> torch.Tensor:
        """log phi_{t-1}(h, c) for rows h and their candidates c (R, S): (R, S, T)."""
        both = torch.logaddexp(state.r_nonblank, state.r_blank)  # (R, T)
        empty = state.last_token < 0
        start = torch.where(empty, 0.0, NEG_INF).to(both)  # phi_{-1}
        phi = _shift_right(both, start)[:, None, :]  # (R, 1, T)
        phi_repeat = _shift_right(state.r_blank, start)[:, None, :]
        repeat = (tokens == state.last_token[:, None])[:, :, None]  # (R, S, 1)
        return torch.where(repeat, phi_repeat, phi)

    def _emissions(self, state: CTCPrefixState, tokens: torch.Tensor) -> torch.Tensor:
        """log x_t(c) of each row's utterance for candidates (R, S): (R, S, T)."""
        steps = torch.arange(self.log_probs.shape[1], device=tokens.device)
        return self.log_probs[state.utterance[:, None, None], steps[None, None, :],
                              tokens[:, :, None]]

    def score(self, state: CTCPrefixState, tokens: torch.Tensor) -> torch.Tensor:
        """log psi(h+c) - log psi(h) for candidate tokens (R, S) of the rows: (R, S).

        eos scores the end of h; blank cannot be emitted (-inf). A prefix CTC cannot align
        (log psi(h) = -inf) gives -inf to every candidate (not -inf - -inf = nan)."""
        entry = self._entry(state, tokens)  # (R, S, T)
        emission = self._emissions(state, tokens)
        previous = state.prefix_score[:, None]
        increment = self._log_psi(state, tokens, entry, emission) - previous
        return increment.masked_fill(previous == NEG_INF, NEG_INF)

    def _log_psi(self, state: CTCPrefixState, tokens: torch.Tensor, entry: torch.Tensor,
                 emission: torch.Tensor) -> torch.Tensor:
        """log psi(h+c) (R, S) from the candidates' entries and emissions (R, S, T)."""
        valid = self.valid[state.utterance][:, None, :]  # (R, 1, T)
        psi = (entry + emission).masked_fill(~valid, NEG_INF).logsumexp(-1)  # (R, S)
        last = (self.lengths[state.utterance] - 1)[:, None]  # (R, 1)
        ending = torch.logaddexp(state.r_nonblank.gather(1, last),
                                 state.r_blank.gather(1, last))  # (R, 1)
        psi = torch.where(tokens == self.eos, ending, psi)
        return psi.masked_fill(tokens == self.blank, NEG_INF)

    def extend(self, state: CTCPrefixState, source: torch.Tensor, tokens: torch.Tensor,
               ) -> CTCPrefixState:
        """The state of rows source (R',) extended by tokens (R',); eos leaves h as it is."""
        parent = state.select(source)
        entry = self._entry(parent, tokens[:, None])  # (R', 1, T)
        emission = self._emissions(parent, tokens[:, None])
        prefix = self._log_psi(parent, tokens[:, None], entry, emission)[:, 0]
        r_nonblank = _linear_recursion(entry[:, 0], emission[:, 0])  # (R', T)
        blank = self.log_probs[parent.utterance, :, self.blank]  # (R', T)
        none = torch.full_like(r_nonblank[:, 0], NEG_INF)
        r_blank = _linear_recursion(_shift_right(r_nonblank, none), blank)
        ended = tokens == self.eos
        return CTCPrefixState(
            r_nonblank=torch.where(ended[:, None], parent.r_nonblank, r_nonblank),
            r_blank=torch.where(ended[:, None], parent.r_blank, r_blank),
            prefix_score=torch.where(ended, parent.prefix_score, prefix),
            last_token=torch.where(ended, parent.last_token, tokens),
            utterance=parent.utterance,
        )
