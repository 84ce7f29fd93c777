"""ESPnetDecoderOnlyModel: speech (or text) prefix -> decoder-only stack -> text.

Token layout of one utterance (written down here and in README.md):

    [prefix][prompt][y_1 .. y_n]  ->  predicts  [y_1 .. y_n][eos]

- prefix: the speech encoder output projected to d_model (``input_type: speech``), or
  the embedded source text ``src_text`` (``input_type: text``, summarisation);
- prompt: one or more task tokens from the token list, e.g. ``<asr>``, ``<st_de>``,
  ``<slu>``, ``<summ>``; per utterance from the optional data ``prompt`` (a text file of
  whitespace-separated token symbols), else ``task_token`` (default ``<sos/eos>``);
- y: the target tokens. SLU puts the intent label tokens first, then the transcript
  (or the label only), in the ``text`` of the data directory;
- the loss (label-smoothed CE) covers y and eos only; CTC (``ctc_weight`` > 0) is on the
  encoder output against y.

Batches: the prefix block is left-padded, so every utterance's text starts at the same
time index; positions count real tokens only (prefix 0..P_b-1, then the text), so an
utterance gives the same result alone or in a batch.
"""

from typing import Dict, List, Tuple

import torch
from torch import nn
from espnet.nets.pytorch_backend.nets_utils import th_accuracy
from espnet.nets.pytorch_backend.transformer.label_smoothing_loss import LabelSmoothingLoss
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel

from espnet2_mtla.model.decoder import DecoderOnlyStack
from espnet2_mtla.model.prefix_lm import EncodedPrefix, PrefixLM, left_aligned


class ESPnetDecoderOnlyModel(AbsESPnetModel, PrefixLM):
    """Decoder-only model over a speech or text prefix (see the module docstring)."""

    def __init__(
        self,
        vocab_size: int,
        token_list: List[str],
        frontend,
        specaug,
        normalize,
        encoder,
        decoder: DecoderOnlyStack,
        ctc,
        input_type: str = "speech",
        ctc_weight: float = 0.0,
        lsm_weight: float = 0.1,
        length_normalized_loss: bool = False,
        task_token: str = "<sos/eos>",
        sym_sos_eos: str = "<sos/eos>",
        ignore_id: int = -1,
    ):
        super().__init__()
        if input_type not in ("speech", "text"):
            raise ValueError(f"model_conf.input_type must be speech or text, got {input_type!r}")
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"model_conf.ctc_weight must be in [0, 1], got {ctc_weight}")
        for symbol, key in ((task_token, "task_token"), (sym_sos_eos, "sym_sos_eos")):
            if symbol not in token_list:
                raise ValueError(f"model_conf.{key}={symbol!r} is not in the token list")
        self.vocab_size = vocab_size
        self.token_list = list(token_list)
        self.eos = self.token_list.index(sym_sos_eos)
        self.task_token_id = self.token_list.index(task_token)
        self.ignore_id = ignore_id
        self.input_type = input_type
        self.prefix_input_name = "speech" if input_type == "speech" else "src_text"
        self.ctc_weight = ctc_weight
        self.frontend = frontend
        self.specaug = specaug
        self.normalize = normalize
        self.encoder = encoder
        self.decoder = decoder
        self.ctc = ctc if ctc_weight > 0 else None
        self.blank_id = 0  # espnet's CTC loss takes token 0 (<blank> in its token lists)
        self._unpadded_length_cache = {}  # input frames -> encoder frames, see below
        self.prefix_proj = (
            nn.Linear(encoder.output_size(), decoder.d_model) if input_type == "speech" else None
        )
        self.criterion = LabelSmoothingLoss(
            size=vocab_size,
            padding_idx=ignore_id,
            smoothing=lsm_weight,
            normalize_length=length_normalized_loss,
        )

    # --- the prefix -------------------------------------------------------------------
    def encode_speech(self, speech, speech_lengths):
        """Frontend -> SpecAugment (training) -> normalisation -> encoder."""
        if self.frontend is not None:
            feats, feats_lengths = self.frontend(speech, speech_lengths)
        else:
            feats, feats_lengths = speech, speech_lengths
        feats = feats.to(self.prefix_proj.weight.dtype)  # the frontend may stay in fp32
        if self.specaug is not None and self.training:
            feats, feats_lengths = self.specaug(feats, feats_lengths)
        if self.normalize is not None:
            feats, feats_lengths = self.normalize(feats, feats_lengths)
        encoded, encoded_lengths, _ = self.encoder(feats, feats_lengths)
        encoded_lengths = torch.minimum(encoded_lengths, self.unpadded_lengths(feats, feats_lengths))
        return encoded, encoded_lengths

    def unpadded_lengths(self, feats, feats_lengths):
        """Encoder output lengths the utterances would have alone (without padding).

        ESPnet's convolutional subsampling derives output lengths from the padded mask,
        so a padded utterance gets up to two frames more than alone, frames that see
        the padding. Trimming to the unpadded length keeps training consistent with
        decoding (which encodes each utterance alone). Probed once per input length
        through the subsampling module, then cached.
        """
        embed = getattr(self.encoder, "embed", None)
        if embed is None or not hasattr(embed, "conv"):
            return feats_lengths  # no subsampling: lengths do not depend on padding
        lengths = []
        for length in feats_lengths.tolist():
            if length not in self._unpadded_length_cache:
                probe = feats.new_zeros(1, length, feats.shape[-1])
                mask = torch.ones(1, 1, length, dtype=torch.bool, device=feats.device)
                with torch.no_grad():
                    out_mask = embed(probe, mask)[1]
                self._unpadded_length_cache[length] = int(out_mask.sum())
            lengths.append(self._unpadded_length_cache[length])
        return torch.tensor(lengths, device=feats_lengths.device)

    def encode_prefix(self, batch: Dict[str, torch.Tensor]):
        """Left-padded prefix (B, P, D), its padding (B, P), positions (B, P), lengths (B,),
        and the encoder output and lengths (for CTC; None for text input)."""
        if self.input_type == "speech":
            if "speech" not in batch:
                raise ValueError("input_type speech needs the data name 'speech'")
            encoded, encoded_lengths = self.encode_speech(batch["speech"], batch["speech_lengths"])
            prefix = self.prefix_proj(encoded)
            lengths = encoded_lengths
        else:
            if "src_text" not in batch:
                raise ValueError("input_type text needs the data name 'src_text'")
            source, lengths = batch["src_text"], batch["src_text_lengths"]
            prefix = self.decoder.embed(source.clamp(min=0))  # -1 padding -> any id, masked
            encoded = encoded_lengths = None
        prefix, padding, positions = left_aligned(prefix, lengths)
        return EncodedPrefix(prefix, padding, positions, lengths, encoded, encoded_lengths)

    # --- training -----------------------------------------------------------------------
    def forward(
        self, text: torch.Tensor, text_lengths: torch.Tensor, **batch
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        batch_size = text.shape[0]
        encoded = self.encode_prefix(batch)
        text_in, text_out, lengths = self.teacher_forcing(*self.prompts(batch), text, text_lengths)
        logits = self.text_logits(encoded, text_in, lengths)
        loss_att = self.criterion(logits, text_out)
        accuracy = th_accuracy(logits.view(-1, self.vocab_size), text_out, self.ignore_id)
        stats = dict(loss_att=loss_att.detach(), acc=accuracy)
        loss = loss_att
        if self.ctc is not None:
            loss_ctc = self.ctc(encoded.encoded, encoded.encoded_lengths, text, text_lengths)
            loss = (1 - self.ctc_weight) * loss_att + self.ctc_weight * loss_ctc
            stats["loss_ctc"] = loss_ctc.detach()
        stats["loss"] = loss.detach()
        # gatherable across DDP workers / DataParallel replicas, as espnet's trainer expects
        return force_gatherable((loss, stats, batch_size), loss.device)

    def collect_feats(self, text=None, text_lengths=None, **batch) -> Dict[str, torch.Tensor]:
        if self.input_type != "speech":
            return {}  # text input: no features to take statistics of
        if self.frontend is None:
            return {"feats": batch["speech"], "feats_lengths": batch["speech_lengths"]}
        feats, feats_lengths = self.frontend(batch["speech"], batch["speech_lengths"])
        return {"feats": feats, "feats_lengths": feats_lengths}
