"""MuST-C (v1.0+) English -> German, official layout::

    <root>/en-de/data/<split>/wav/ted_<talk>.wav
    <root>/en-de/data/<split>/txt/<split>.yaml   # one {duration, offset, speaker_id, wav} per segment
    <root>/en-de/data/<split>/txt/<split>.en     # transcripts, one line per segment
    <root>/en-de/data/<split>/txt/<split>.de     # translations, same order

Writes per split: wav.scp (talk -> wav), segments (utt talk start end), text (German),
text.en (English), utt2spk. Utterance ids: ``<speaker>_<start cs>_<end cs>`` with times in
centiseconds, zero-padded, so sorting follows the talk."""

from pathlib import Path

import yaml

from espnet2_mtla.corpora import CorpusError
from espnet2_mtla.data.kaldi_files import utt2spk_to_spk2utt, write_map

SPLITS = ("train", "dev", "tst-COMMON", "tst-HE")
HOW_TO_GET = """MuST-C English-German is not where db.sh says (MUSTC={root}).
Download MUST-C v1.0 (or later) en-de from https://ict.fbk.eu/must-c/ (registration
needed), unpack it so that {root}/en-de/data/train/wav and {root}/en-de/data/train/txt
exist, and set MUSTC in db.sh to that folder."""


def prepare(root, out_dir, splits=("train", "dev", "tst-COMMON"), lang="de"):
    base = Path(root) / f"en-{lang}" / "data"
    for split in splits:
        txt, wav = base / split / "txt", base / split / "wav"
        needed = [txt / f"{split}.yaml", txt / f"{split}.en", txt / f"{split}.{lang}", wav]
        missing = [str(p) for p in needed if not p.exists()]
        if missing:
            raise CorpusError(HOW_TO_GET.format(root=root) + "\nMissing: " + ", ".join(missing))
        with open(txt / f"{split}.yaml", encoding="utf-8") as stream:
            segments = yaml.load(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        english = (txt / f"{split}.en").read_text(encoding="utf-8").splitlines()
        german = (txt / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
        if not len(segments) == len(english) == len(german):
            raise CorpusError(f"{txt}: {len(segments)} segments in {split}.yaml but "
                              f"{len(english)} lines in {split}.en and {len(german)} in "
                              f"{split}.{lang}")
        maps = {name: {} for name in ("wav.scp", "segments", "text", "text.en", "utt2spk")}
        for index, (segment, source, target) in enumerate(zip(segments, english, german)):
            talk = Path(segment["wav"]).stem
            start = float(segment["offset"])
            end = start + float(segment["duration"])
            speaker = str(segment["speaker_id"]).replace("/", "_")
            utt = f"{speaker}_{round(start * 100):07d}_{round(end * 100):07d}"
            if utt in maps["segments"]:
                raise CorpusError(f"{txt / (split + '.yaml')}: segment {index} repeats {utt}")
            audio = wav / segment["wav"]
            maps["wav.scp"][talk] = str(audio.resolve())
            maps["segments"][utt] = f"{talk} {start:.2f} {end:.2f}"
            maps["text"][utt] = " ".join(target.split())
            maps["text.en"][utt] = " ".join(source.split())
            maps["utt2spk"][utt] = speaker
        missing_audio = sorted(p for p in maps["wav.scp"].values() if not Path(p).exists())
        if missing_audio:
            raise CorpusError(f"{split}: {len(missing_audio)} talks missing, e.g. {missing_audio[0]}")
        out = Path(out_dir) / split
        out.mkdir(parents=True, exist_ok=True)
        for name, entries in maps.items():
            write_map(out / name, entries)
        write_map(out / "spk2utt", utt2spk_to_spk2utt(maps["utt2spk"]))
