#!/usr/bin/env python3
"""Write a data directory's audio as flac or wav files, or one Kaldi ark, at one sample
rate (mtla.sh stage 3).

    python -m espnet2_mtla.bin.format_audio --fs 16000 --audio_format flac data/train dump/raw/train

Reads ``wav.scp`` (entries: paths, Kaldi pipes ``cmd |`` or ``x.ark:offset``; with
``segments`` each segment becomes one utterance), resamples to ``--fs``, keeps the first
channel, writes ``<out>/data/<key>.<format>`` (or ``<out>/data/audio.ark`` of 16-bit wav
with ``--audio_format ark``), a new ``wav.scp``, ``utt2num_samples``, and copies the
other per-utterance files. An unreadable or empty recording is reported by key and
skipped (then ``fix_data_dir`` drops its utterances; ``--on_bad_audio error`` stops
instead, naming them); already written files are kept, so an interrupted run resumes
(an ark is rewritten whole).
"""

import argparse
import io
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import soundfile
import torch
import torchaudio.functional

from espnet2_mtla.data.datadir import fix_data_dir
from espnet2_mtla.data.kaldi_files import read_map, write_map

COPIED = ("text", "utt2spk", "prompt", "src_text", "utt2lang")


ARK_ENTRY = re.compile(r".+\.ark:\d+$")


def load(entry: str, fs: int) -> np.ndarray:
    """The first channel of a wav.scp entry at ``fs``: a file path, a Kaldi pipe (a
    command ending in ``|`` that writes audio to stdout), or ``audio.ark:<offset>``."""
    if ARK_ENTRY.match(entry.strip()):
        rate, samples = kaldiio.load_mat(entry.strip())
        audio = samples.astype(np.float32)
        if samples.dtype == np.int16:
            audio /= 32768.0
        audio = audio.reshape(len(audio), -1)[:, 0]
        if rate != fs:
            audio = torchaudio.functional.resample(torch.from_numpy(audio), rate, fs).numpy()
        return audio
    if entry.rstrip().endswith("|"):
        done = subprocess.run(entry.rstrip()[:-1], shell=True, capture_output=True)
        if done.returncode != 0:
            raise RuntimeError(f"command failed ({done.returncode}): "
                               f"{done.stderr.decode(errors='replace').strip()[-500:]}")
        entry = io.BytesIO(done.stdout)
    audio, rate = soundfile.read(entry, dtype="float32", always_2d=True)
    audio = audio[:, 0]
    if rate != fs:
        audio = torchaudio.functional.resample(torch.from_numpy(audio), rate, fs).numpy()
    return audio


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fs", type=int, default=16000)
    parser.add_argument("--audio_format", default="flac", choices=["flac", "wav", "ark"],
                        help="ark: one Kaldi archive of 16-bit wav (read with kaldi_ark)")
    parser.add_argument("--on_bad_audio", default="skip", choices=["skip", "error"],
                        help="an unreadable or empty recording: report and skip it, or stop")
    parser.add_argument("source")
    parser.add_argument("target")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    source, target = Path(args.source), Path(args.target)
    (target / "data").mkdir(parents=True, exist_ok=True)
    recordings = read_map(source / "wav.scp")[0]
    if (source / "segments").exists():
        segments = {key: value.split() for key, value in read_map(source / "segments")[0].items()}
    else:
        segments = {key: [key, None, None] for key in recordings}
    wav_scp, num_samples, failed = {}, {}, []
    ark_writer = None
    if args.audio_format == "ark":  # one archive, rewritten whole (no per-file resume)
        ark_writer = kaldiio.WriteHelper(
            f"ark,scp:{(target / 'data' / 'audio.ark').resolve()},{target / 'data' / 'audio.scp'}",
            write_function="soundfile")
    cache = {}
    for index, (key, (recording, start, end)) in enumerate(sorted(segments.items())):
        path = target / "data" / f"{key}.{args.audio_format}"
        if ark_writer is None and path.exists():  # resumed run
            wav_scp[key], num_samples[key] = str(path.resolve()), str(soundfile.info(path).frames)
            continue
        try:
            if recording not in cache:
                cache = {recording: load(recordings[recording], args.fs)}  # one at a time
            audio = cache[recording]
            if start is not None:
                audio = audio[int(float(start) * args.fs): int(float(end) * args.fs)]
            if len(audio) == 0:
                raise ValueError("no samples")
        except Exception as error:
            failed.append(key)
            logging.warning(f"utterance {key}: cannot read {recordings.get(recording)}: {error}")
            continue
        if ark_writer is not None:
            pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
            ark_writer(key, (args.fs, pcm))
            num_samples[key] = str(len(audio))
        else:
            partial = path.with_suffix(".partial")
            soundfile.write(partial, audio, args.fs, format=args.audio_format.upper())
            partial.rename(path)
            wav_scp[key], num_samples[key] = str(path.resolve()), str(len(audio))
        if (index + 1) % 500 == 0:
            logging.info(f"{source}: {index + 1}/{len(segments)} utterances written")
    if ark_writer is not None:
        ark_writer.close()
        wav_scp = read_map(target / "data" / "audio.scp")[0]
    write_map(target / "wav.scp", wav_scp)
    write_map(target / "utt2num_samples", num_samples)
    for name in COPIED:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
    for line in fix_data_dir(target):
        logging.info(line)
    if failed and args.on_bad_audio == "error":
        logging.error(f"{len(failed)} utterances cannot be read: {' '.join(failed[:10])} "
                      "(see the warnings above; --on_bad_audio skip drops them)")
        return 1
    if failed:
        logging.warning(f"{len(failed)} utterances skipped: {' '.join(failed[:10])}")
    if not wav_scp:
        logging.error(f"{source}: no utterance could be read")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
