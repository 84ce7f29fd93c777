"""Decoding-side methods of a prefix language model, in torch only.

``PrefixLM`` lays out [prefix][prompt][text] for the decoder stack (see
``ESPnetDecoderOnlyModel`` for the token layout), scores sequences without a cache, and
prefills and steps the caches for beam search. A class using it provides ``decoder``
(a DecoderOnlyStack), ``eos``, ``ignore_id``, ``task_token_id``, ``prefix_input_name``
(the data name of the prefix input, e.g. "speech") and ``encode_prefix(batch)``, which
returns an ``EncodedPrefix``. It imports no espnet, so decoding and benchmarks run
wherever torch does.
"""

from abc import ABC, abstractmethod
from typing import Dict, List, NamedTuple, Optional

import torch
from torch.nn.utils.rnn import pad_sequence


def left_padding(lengths: torch.Tensor, total: int):
    """The padding mask (B, total) and positions (B, total) of rows of ``lengths`` real
    frames right-aligned in ``total`` slots (left padding): slot t holds frame t - shift,
    shift = total - length; positions 0..len-1, 0 at padding. The one rule of left
    padding that the model, the beam search and the benchmark share."""
    steps = torch.arange(total, device=lengths.device)
    shift = (total - lengths)[:, None]  # (B, 1)
    padding = steps[None, :] < shift
    return padding, torch.where(padding, 0, steps[None, :] - shift)


def left_aligned(x: torch.Tensor, lengths: torch.Tensor):
    """Move each row's first ``lengths[b]`` frames of x (B, T, ...) to the end (left padding).

    Returns the left-padded tensor, its padding mask (B, T) and the positions (B, T) of
    the real frames (0..len-1; 0 at padding).
    """
    batch, total = x.shape[:2]
    padding, positions = left_padding(lengths, total)
    index = positions.view(batch, total, *([1] * (x.dim() - 2))).expand_as(x)
    moved = torch.gather(x, 1, index)
    moved = moved.masked_fill(padding.view(batch, total, *([1] * (x.dim() - 2))), 0)
    return moved, padding, positions


class EncodedPrefix(NamedTuple):
    """What ``encode_prefix(batch)`` gives: the decoder's left-padded prefix and, for a
    speech input, the encoder output that CTC reads."""

    prefix: torch.Tensor  # (B, P, D) left-padded
    padding: torch.Tensor  # (B, P) True at padding
    positions: torch.Tensor  # (B, P) 0..len-1 of the real frames, 0 at padding
    lengths: torch.Tensor  # (B,) real prefix frames
    encoded: Optional[torch.Tensor] = None  # (B, T, D_enc) right-padded, or None (text)
    encoded_lengths: Optional[torch.Tensor] = None  # (B,)


class PrefixLM(ABC):
    """Mixin: the decoder-only layout, teacher forcing, scoring and cached decoding.

    A subclass provides ``decoder``, ``eos``, ``ignore_id``, ``task_token_id``,
    ``prefix_input_name`` and ``encode_prefix`` (see the module docstring)."""

    @abstractmethod
    def encode_prefix(self, batch: Dict[str, torch.Tensor]) -> EncodedPrefix:
        """The decoder's left-padded prefix of a batch (and the encoder output for CTC)."""

    def prompts(self, batch: Dict[str, torch.Tensor]):
        """Prompt token ids of every utterance: a right-padded block (B, Lp) and lengths (B,)."""
        if "prompt" in batch:
            return batch["prompt"], batch["prompt_lengths"]
        size = len(batch[self.prefix_input_name])
        device = next(self.parameters()).device
        block = torch.full((size, 1), self.task_token_id, dtype=torch.long, device=device)
        return block, torch.ones(size, dtype=torch.long, device=device)

    def text_logits(self, encoded: EncodedPrefix, text_in, text_lengths):
        """Logits (B, T, V) of a right-padded text block after the prefix."""
        steps = torch.arange(text_in.shape[1], device=text_in.device)
        text_positions = encoded.lengths[:, None] + steps
        text_padding = steps[None, :] >= text_lengths[:, None]
        hidden = self.decoder(
            self.decoder.embed(text_in.clamp(min=0)),
            torch.cat([encoded.positions, text_positions], dim=1),
            torch.cat([encoded.padding, text_padding], dim=1),
            prefix=encoded.prefix,
        )
        return self.decoder.logits(hidden)

    def teacher_forcing(self, prompts, prompt_lengths, targets, target_lengths):
        """Decoder input [prompt; y] and target [ignore..; y; eos] of each row.

        prompts (B, Lp) and targets (B, Lt) are right-padded token blocks (any padding
        value) with their lengths (B,). Returns the input (B, N) padded with 0, the target
        (B, N) padded with ignore_id and the row lengths (B,), N = the longest row. Built
        by index arithmetic over the whole batch (no per-utterance work).
        """
        batch = prompts.shape[0]
        targets = torch.nn.functional.pad(targets, (0, 1))  # a column to gather when Lt = 0
        lengths = prompt_lengths + target_lengths
        columns = torch.arange(int(lengths.max()), device=prompts.device)[None, :]  # (1, N)
        start = prompt_lengths[:, None]  # (B, 1): the column of y_1 in the input
        end = lengths[:, None]  # (B, 1): one past the last input column

        def take(block, index):  # block[b, index[b, n]] for in-range indices, (B, N)
            index = index.clamp(0, block.shape[1] - 1).expand(batch, -1)
            return torch.gather(block, 1, index)

        inputs = torch.where(columns < start, take(prompts, columns), take(targets, columns - start))
        inputs = inputs.masked_fill(columns >= end, 0)
        # column n predicts input column n + 1; the last input column predicts eos
        outputs = take(targets, columns + 1 - start)
        outputs = outputs.masked_fill(columns == end - 1, self.eos)
        outputs = outputs.masked_fill((columns < start - 1) | (columns >= end), self.ignore_id)
        return inputs, outputs, lengths

    # --- decoding -----------------------------------------------------------------------
    def sequence_log_probs(self, batch, hypotheses: List[torch.Tensor]) -> torch.Tensor:
        """Sum of log-probabilities of each hypothesis (y then eos), without a cache;
        hypotheses[b] is scored against row b of the batch."""
        encoded = self.encode_prefix(batch)
        if len(hypotheses) != encoded.prefix.shape[0]:
            raise ValueError(f"sequence_log_probs: {len(hypotheses)} hypotheses for a batch of "
                             f"{encoded.prefix.shape[0]} rows (one hypothesis per row)")
        hypothesis_lengths = torch.tensor([len(h) for h in hypotheses], device=hypotheses[0].device)
        text_in, text_out, lengths = self.teacher_forcing(
            *self.prompts(batch), pad_sequence(list(hypotheses), True, 0), hypothesis_lengths
        )
        log_probs = self.text_logits(encoded, text_in, lengths).log_softmax(-1)
        picked = log_probs.gather(-1, text_out.clamp(min=0)[..., None])[..., 0]
        return picked.masked_fill(text_out == self.ignore_id, 0.0).sum(dim=1)

    def start_decoding(self, encoded: EncodedPrefix, prompts, max_new_tokens: int = 0):
        """Prefill caches with [prefix; prompt]; returns caches and log-probs (B, V) of y_1.

        prompts: (right-padded block (B, Lp), lengths (B,)) as ``prompts`` gives them. The
        caches are preallocated for ``max_new_tokens`` more steps.
        """
        prefix, prefix_padding, prefix_positions, prefix_lengths = encoded[:4]
        prompt_block, prompt_lengths = prompts
        prompt_block = prompt_block.clamp(min=0)  # any padding value -> an id, masked
        prompt_embed = self.decoder.embed(prompt_block)
        prompt_embed, prompt_padding, prompt_steps = left_aligned(prompt_embed, prompt_lengths)
        capacity = prefix.shape[1] + prompt_block.shape[1] + max_new_tokens
        caches = self.decoder.make_caches(prefix.shape[0], prefix.device, prefix.dtype, capacity,
                                          prefix_columns=prefix.shape[1])
        hidden = self.decoder(
            prompt_embed,
            torch.cat([prefix_positions, prefix_lengths[:, None] + prompt_steps], dim=1),
            torch.cat([prefix_padding, prompt_padding], dim=1),
            prefix=prefix,
            caches=caches,
        )
        return caches, self.decoder.logits(hidden[:, -1]).float().log_softmax(-1)

    def decode_step(self, tokens: torch.Tensor, caches) -> torch.Tensor:
        """Feed one token per row (B,); log-probs (B, V) of the next token."""
        hidden = self.decoder(self.decoder.embed(tokens[:, None]), None, None, caches=caches)
        return self.decoder.logits(hidden[:, -1]).float().log_softmax(-1)
