#!/usr/bin/env python3
"""Move data between fairseq S2T manifests (TSV) and Kaldi-style data dirs.

    # a fairseq manifest (e.g. MuST-C prepared by fairseq) -> data dir
    python -m espnet2_mtla.bin.fairseq_manifest import --tsv train_st.tsv --out data/train_st
    # a data dir with feats.scp (zip:offset:length) -> manifest
    python -m espnet2_mtla.bin.fairseq_manifest export --data_dir dump/fbank_zip/train \
        --tsv train.tsv

Columns: ``id``, ``audio`` (``<zip>:<offset>:<length>``), ``n_frames``, ``tgt_text``,
``speaker``, optional ``src_text``, ``src_lang``, ``tgt_lang``. ``export`` writes absolute
archive paths, as fairseq's own data preparation does for an absolute data root: fairseq
joins ``audio`` to its config's ``audio_root`` (default: none, i.e. the working directory),
and an absolute path wins whatever those are. ``import`` resolves a relative path against
``--audio_root`` (fairseq's config key; default: the TSV's folder). Data dir files: ``feats.scp`` (absolute archive paths,
read with the ``zip_npy`` type), ``utt2num_frames``, ``text``, ``utt2spk``, ``spk2utt``,
optional ``src_text``, ``utt2src_lang``, ``utt2tgt_lang``.
"""

import argparse
import csv
import os
import sys
from pathlib import Path

from espnet2_mtla.features.zip_features import parse_location
from espnet2_mtla.data.kaldi_files import read_map, utt2spk_to_spk2utt, write_map

REQUIRED = ("id", "audio", "n_frames", "tgt_text", "speaker")
OPTIONAL = {"src_text": "src_text", "src_lang": "utt2src_lang", "tgt_lang": "utt2tgt_lang"}


def import_manifest(tsv: Path, out: Path, audio_root: Path = None):
    """Manifest -> data dir; relative ``audio`` paths are taken from ``audio_root`` (default:
    the TSV's folder)."""
    root = Path(audio_root) if audio_root is not None else tsv.parent
    with open(tsv, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream, delimiter="\t", quotechar=None, quoting=csv.QUOTE_NONE)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{tsv}: missing columns {missing} (has {reader.fieldnames})")
        maps = {name: {} for name in ("feats.scp", "utt2num_frames", "text", "utt2spk")}
        extra = [c for c in OPTIONAL if c in reader.fieldnames]
        for column in extra:
            maps[OPTIONAL[column]] = {}
        for number, row in enumerate(reader, 2):
            key = row["id"]
            if not key or any(ch.isspace() for ch in key):
                raise ValueError(f"{tsv}:{number}: id {key!r} is empty or has spaces")
            if key in maps["text"]:
                raise ValueError(f"{tsv}:{number}: id {key} repeats")
            path, offset, length = parse_location(row["audio"])
            if not os.path.isabs(path):
                path = str((root / path).resolve())
            maps["feats.scp"][key] = f"{path}:{offset}:{length}"
            maps["utt2num_frames"][key] = str(int(row["n_frames"]))
            maps["text"][key] = row["tgt_text"]
            maps["utt2spk"][key] = row["speaker"]
            for column in extra:
                maps[OPTIONAL[column]][key] = row[column]
    out.mkdir(parents=True, exist_ok=True)
    for name, entries in maps.items():
        write_map(out / name, entries)
    write_map(out / "spk2utt", utt2spk_to_spk2utt(maps["utt2spk"]))
    return len(maps["text"])


def export_manifest(data_dir: Path, tsv: Path):
    """Data dir with feats.scp -> manifest with absolute archive paths."""
    maps = {name: read_map(data_dir / name, allow_empty_values=name == "text")[0]
            for name in ("feats.scp", "utt2num_frames", "text", "utt2spk")}
    extra = [c for c, name in OPTIONAL.items() if (data_dir / name).exists()]
    for column in extra:
        maps[OPTIONAL[column]] = read_map(data_dir / OPTIONAL[column])[0]
    tsv.parent.mkdir(parents=True, exist_ok=True)
    with open(tsv, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, delimiter="\t", quotechar=None, quoting=csv.QUOTE_NONE,
                            lineterminator="\n")
        writer.writerow([*REQUIRED, *extra])
        for key in sorted(maps["feats.scp"], key=str.encode):
            path, offset, length = parse_location(maps["feats.scp"][key])
            # absolute, so fairseq finds it whatever its audio_root and working directory
            path = str((data_dir / path).resolve())
            writer.writerow([key, f"{path}:{offset}:{length}", maps["utt2num_frames"][key],
                             maps["text"][key], maps["utt2spk"][key],
                             *(maps[OPTIONAL[c]][key] for c in extra)])
    return len(maps["feats.scp"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="TSV manifest -> data dir")
    imp.add_argument("--tsv", required=True, type=Path)
    imp.add_argument("--out", required=True, type=Path)
    imp.add_argument("--audio_root", type=Path, default=None,
                     help="folder that relative audio paths are under (fairseq's audio_root; "
                          "default: the TSV's folder)")
    exp = sub.add_parser("export", help="data dir -> TSV manifest")
    exp.add_argument("--data_dir", required=True, type=Path)
    exp.add_argument("--tsv", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "import":
            count = import_manifest(args.tsv, args.out, args.audio_root)
            print(f"fairseq_manifest: {count} utterances -> {args.out}", file=sys.stderr)
        else:
            count = export_manifest(args.data_dir, args.tsv)
            print(f"fairseq_manifest: {count} utterances -> {args.tsv}", file=sys.stderr)
    except (ValueError, OSError, KeyError) as error:
        print(f"fairseq_manifest: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
