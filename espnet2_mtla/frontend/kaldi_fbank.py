"""Kaldi-compatible log-mel filterbank features (torchaudio.compliance.kaldi.fbank), the
features of fairseq's speech-to-text data preparation: 25 ms Povey windows every 10 ms,
no dither, samples scaled to 16-bit range, ``num_mel_bins`` (80) log-mel energies.

``kaldi_fbank`` is the one implementation: the fbank80.zip writer stores its output, and
``frontend: kaldi_fbank`` computes the same online, utterance by utterance, so a model
sees the same features either way."""

from typing import Tuple

import torch
import torchaudio.compliance.kaldi as kaldi
from espnet2.asr.frontend.abs_frontend import AbsFrontend


def kaldi_fbank(samples: torch.Tensor, fs: int = 16000, num_mel_bins: int = 80) -> torch.Tensor:
    """samples (T,) floats in [-1, 1] -> features (frames, num_mel_bins), float32."""
    waveform = samples.float().reshape(1, -1) * 32768.0
    return kaldi.fbank(waveform, num_mel_bins=num_mel_bins, sample_frequency=fs,
                       frame_length=25.0, frame_shift=10.0, dither=0.0)


class KaldiFbankFrontend(AbsFrontend):
    """``frontend: kaldi_fbank`` (frontend_conf: fs, num_mel_bins)."""

    def __init__(self, fs: int = 16000, num_mel_bins: int = 80):
        super().__init__()
        self.fs, self.num_mel_bins = int(fs), num_mel_bins

    def output_size(self) -> int:
        return self.num_mel_bins

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """speech (B, T) padded -> (B, frames, D) padded with zeros, frames (B,)."""
        feats = [kaldi_fbank(row[: int(length)], self.fs, self.num_mel_bins)
                 for row, length in zip(speech, lengths)]
        frames = torch.tensor([f.shape[0] for f in feats], device=speech.device)
        padded = speech.new_zeros(len(feats), int(frames.max()), self.num_mel_bins)
        for index, f in enumerate(feats):
            padded[index, : f.shape[0]] = f.to(padded.dtype)
        return padded, frames
