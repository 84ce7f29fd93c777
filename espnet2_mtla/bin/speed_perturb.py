#!/usr/bin/env python3
"""Write a recording played ``--factor`` times as fast to stdout as 16-bit WAV (tempo and
pitch change together, as sox's ``speed`` effect does): the samples are taken to be at
``fs * factor`` Hz and resampled to ``fs``. Used in the wav.scp pipes that
utils/perturb_data_dir_speed.sh writes.

    python -m espnet2_mtla.bin.speed_perturb --factor 0.9 in.flac > out.wav
    some-decoder in.sph | python -m espnet2_mtla.bin.speed_perturb --factor 1.1 - > out.wav
"""

import argparse
import io
import sys

import soundfile
import torch
import torchaudio.functional


def change_speed(samples: torch.Tensor, fs: int, factor: float) -> torch.Tensor:
    """(T, C) or (T,) samples at ``fs``, played ``factor`` times as fast: (~T / factor, ...)."""
    source_rate = round(fs * factor)
    return torchaudio.functional.resample(samples.T, source_rate, fs).T


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factor", type=float, required=True)
    parser.add_argument("input", help="an audio file, or - for audio on stdin")
    args = parser.parse_args(argv)
    if not 0.5 <= args.factor <= 2.0:
        parser.error(f"--factor {args.factor}: expected a value in [0.5, 2]")
    source = io.BytesIO(sys.stdin.buffer.read()) if args.input == "-" else args.input
    try:
        samples, fs = soundfile.read(source, dtype="float32", always_2d=True)
    except Exception as error:
        print(f"speed_perturb: cannot read {args.input}: {error}", file=sys.stderr)
        return 1
    out = change_speed(torch.from_numpy(samples), fs, args.factor).clamp(-1, 1).numpy()
    buffer = io.BytesIO()
    soundfile.write(buffer, out, fs, format="WAV", subtype="PCM_16")
    sys.stdout.buffer.write(buffer.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
