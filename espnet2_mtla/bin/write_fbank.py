#!/usr/bin/env python3
"""Compute 80-dim Kaldi-compatible Fbank (espnet2_mtla.frontend.kaldi_fbank) of a data dir
once and store it fairseq-S2T style (mtla.sh --feats_type fbank_zip), or as a Kaldi ark
with ``--archive ark`` (mtla.sh --feats_type fbank; ``feats.scp`` then reads with
``kaldi_ark``):

    python -m espnet2_mtla.bin.write_fbank --data_dir dump/raw/train \
        --out_dir dump/fbank_zip/train --gcmvn

writes ``<out_dir>/fbank80.zip`` (one ZIP_STORED ``<key>.npy`` per utterance),
``feats.scp`` (``key fbank80.zip:<offset>:<length>``, read with the ``zip_npy`` type),
``utt2num_frames``, copies of the text files, and with ``--gcmvn`` the training set's
``gcmvn.npz`` (mean, std). Resumable: utterances already in the archive are kept. An
unreadable utterance is reported by key and left out of feats.scp (never written).
"""

import argparse
import logging
import sys
from pathlib import Path

import kaldiio
import numpy as np
import torch
from tqdm import tqdm

from espnet2_mtla.bin.format_audio import load
from espnet2_mtla.features.zip_features import ZipFeatureWriter, member_locations, read_feature
from espnet2_mtla.frontend.kaldi_fbank import kaldi_fbank
from espnet2_mtla.data.datadir import copy_utterance_files
from espnet2_mtla.data.kaldi_files import read_map, write_map


def features(args, recordings, keys, destination: str):
    """(key, matrix) of each readable utterance; unreadable ones are reported and left out."""
    failed = []
    for key in tqdm(keys, desc=f"fbank -> {destination}", unit="utt"):
        try:
            samples = torch.from_numpy(load(recordings[key], args.fs))
            if samples.numel() < args.fs // 40:
                raise ValueError(f"only {samples.numel()} samples")
            yield key, kaldi_fbank(samples, args.fs, args.num_mel_bins).numpy()
        except Exception as error:
            failed.append(key)
            logging.warning("utterance %s (%s): skipped: %s", key, recordings[key], error)
    if failed:
        logging.warning("%d of %d utterances left out, e.g. %s", len(failed), len(keys),
                        failed[0])


def write_zip(args, recordings, zip_path: Path) -> dict:
    """fbank80.zip (resumable: stored members are kept) and its listing."""
    with ZipFeatureWriter(zip_path) as writer:
        todo = [key for key in sorted(recordings) if key not in writer]
        if len(todo) < len(recordings):
            logging.info("%s: %d utterances stored already (resumed)", zip_path,
                         len(recordings) - len(todo))
        for key, matrix in features(args, recordings, todo, str(zip_path)):
            writer.write(key, matrix)
    locations = member_locations(zip_path)
    listing = {}
    for key in sorted(recordings):
        if f"{key}.npy" in locations:
            offset, length = locations[f"{key}.npy"]
            listing[key] = f"{zip_path.name}:{offset}:{length}"
    return listing


def write_ark(args, recordings) -> dict:
    """feats.ark (rewritten whole) and its listing (absolute ark paths)."""
    ark = (args.out_dir / "feats.ark").resolve()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    scp = args.out_dir / "ark.scp"
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
        for key, matrix in features(args, recordings, sorted(recordings), str(ark)):
            writer(key, matrix)
    return read_map(scp)[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, type=Path)
    parser.add_argument("--out_dir", required=True, type=Path)
    parser.add_argument("--fs", type=int, default=16000)
    parser.add_argument("--num_mel_bins", type=int, default=80)
    parser.add_argument("--gcmvn", action="store_true", help="also write gcmvn.npz")
    parser.add_argument("--archive", choices=["zip", "ark"], default="zip")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    recordings = read_map(args.data_dir / "wav.scp")[0]
    if args.archive == "ark":
        listing, read = write_ark(args, recordings), lambda key, value: kaldiio.load_mat(value)
    else:
        zip_path = args.out_dir / f"fbank{args.num_mel_bins}.zip"
        listing = write_zip(args, recordings, zip_path)
        read = lambda key, value: read_feature(f"{zip_path}:{value.split(':', 1)[1]}", key)
    write_map(args.out_dir / "feats.scp", listing)
    frames, sums, squares, count = {}, 0.0, 0.0, 0
    for key, value in listing.items():
        matrix = read(key, value)
        frames[key] = str(matrix.shape[0])
        if args.gcmvn:
            sums = sums + matrix.sum(0, dtype=np.float64)
            squares = squares + (matrix.astype(np.float64) ** 2).sum(0)
            count += matrix.shape[0]
    write_map(args.out_dir / "utt2num_frames", frames)
    (args.out_dir / "feats_dim").write_text(f"{args.num_mel_bins}\n")
    copy_utterance_files(args.data_dir, args.out_dir, listing)
    if args.gcmvn:
        mean = sums / count
        std = np.sqrt(np.maximum(squares / count - mean ** 2, 1e-20))
        np.savez(args.out_dir / "gcmvn.npz", mean=mean.astype(np.float32),
                 std=std.astype(np.float32))
    logging.info("%s: %d utterances stored", args.out_dir, len(listing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
