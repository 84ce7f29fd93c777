"""Tiny synthetic speech data and tiny decoder-only models for the task tests.

Each utterance is a few seconds of a distinct chord of tones plus noise (deterministic)
with a fixed transcript; the token list is character-level.
"""

import numpy as np
import soundfile
import torch

FS = 16000
TRANSCRIPTS = {
    "utt1": "hello world",
    "utt2": "mtla is fast",
    "utt3": "beam search",
    "utt4": "speech",
    "utt5": "tiny data set",
}
KEYS_ORDER = sorted(TRANSCRIPTS)
DURATIONS = {"utt1": 2.0, "utt2": 1.6, "utt3": 2.4, "utt4": 1.2, "utt5": 1.9}

LATENT = {"kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8}
ATTENTION_CONFS = {
    "mha": {},
    "mqa": {},
    "gqa": {"num_kv_heads": 2},
    "mla": LATENT,
    "mtla": {**LATENT, "down_rate": 2},
}


def synth_audio(index: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(index)
    t = np.arange(int(seconds * FS)) / FS
    tones = sum(np.sin(2 * np.pi * (200 + 150 * index * k) * t) for k in (1, 2, 3))
    return (0.1 * tones + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def token_list():
    chars = sorted({c for text in TRANSCRIPTS.values() for c in text if c != " "})
    return ["<blank>", "<unk>", "<space>", *chars, "<asr>", "<rev>", "<sos/eos>"]


def encode_text(text: str, tokens):
    index = {tok: i for i, tok in enumerate(tokens)}
    return [index["<space>" if c == " " else c] for c in text]


def tiny_args(attention: str, prefix_mode: str, merge_prefix: bool = True, **extra):
    """Parsed task arguments of a tiny model (frontend: default Fbank, 20 mels)."""
    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask

    parser = DecoderOnlyTask.get_parser()
    args = parser.parse_args([])
    args.token_list = token_list()
    args.token_type = "char"
    args.frontend_conf = {"n_fft": 400, "hop_length": 160, "n_mels": 20}
    args.normalize = "utterance_mvn"
    args.encoder = "linear"
    args.encoder_conf = {"output_size": 32, "input_layer": "conv2d", "dropout_rate": 0.0}
    args.attention = attention
    args.attention_conf = dict(ATTENTION_CONFS[attention])
    args.decoder_conf = {
        "d_model": 32, "num_heads": 4, "num_layers": 2, "ffn_dim": 64, "dropout": 0.0,
        "prefix_mode": prefix_mode, "merge_prefix": merge_prefix,
    }
    args.model_conf = {"lsm_weight": 0.0, "ctc_weight": 0.0}
    for key, value in extra.items():
        setattr(args, key, value)
    return args


def tiny_model(attention: str, prefix_mode: str, seed: int = 0, merge_prefix: bool = True):
    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask

    torch.manual_seed(seed)
    return DecoderOnlyTask.build_model(tiny_args(attention, prefix_mode, merge_prefix))


def speech_batch(keys, tokens=None):
    """A collated batch (speech right-padded, text padded with -1) of ``keys``."""
    tokens = tokens or token_list()
    audio = [torch.from_numpy(synth_audio(int(k[3:]), DURATIONS[k])) for k in keys]
    texts = [torch.tensor(encode_text(TRANSCRIPTS[k], tokens)) for k in keys]
    speech = torch.nn.utils.rnn.pad_sequence(audio, batch_first=True)
    text = torch.nn.utils.rnn.pad_sequence(texts, batch_first=True, padding_value=-1)
    return {
        "speech": speech,
        "speech_lengths": torch.tensor([len(a) for a in audio]),
        "text": text,
        "text_lengths": torch.tensor([len(t) for t in texts]),
    }


def write_data_dir(directory, keys=None, fs=FS):
    """A Kaldi-style data dir: wav.scp (flac files), text, utt2spk."""
    directory.mkdir(parents=True, exist_ok=True)
    keys = keys or sorted(TRANSCRIPTS)
    with open(directory / "wav.scp", "w") as wav_scp, open(directory / "text", "w") as text, \
            open(directory / "utt2spk", "w") as utt2spk:
        for key in keys:
            path = directory / f"{key}.flac"
            soundfile.write(path, synth_audio(int(key[3:]), DURATIONS[key]), fs)
            wav_scp.write(f"{key} {path}\n")
            text.write(f"{key} {TRANSCRIPTS[key]}\n")
            utt2spk.write(f"{key} {key}\n")
    return directory
