"""Write the train/dev/test Kaldi data dirs of a mini corpus, and check their split."""

import hashlib
import random
from pathlib import Path
from typing import Dict, List, Sequence

from espnet2_mtla.mini.speech import (NAMED_VARIANTS, VARIANTS, Voice, random_voice,
                                      write_utterances)
from espnet2_mtla.data.kaldi_files import utt2spk_to_spk2utt, write_map

SPLITS = ("train", "dev", "test")
# voice variants heard only in dev/test, so the test speakers are unseen in training
HELD_OUT_VARIANTS = ("m3", "f2")


def split_items(items: Sequence, sizes: Dict[str, int], seed: int) -> Dict[str, list]:
    """Shuffle (seeded) and cut into disjoint train/dev/test lists of the given sizes."""
    need = sum(sizes.values())
    if len(items) < need:
        raise ValueError(f"only {len(items)} items for {need} utterances ({sizes}): "
                         "ask for fewer")
    items = list(items)
    random.Random(seed).shuffle(items)
    out, start = {}, 0
    for split in SPLITS:
        out[split] = items[start:start + sizes[split]]
        start += sizes[split]
    return out


def voices_for(split: str, count: int, seed: int, more_voices: bool = False) -> List[Voice]:
    """Seeded voices of one split: dev/test speak with the held-out variants only; train
    with the others, and with espeak-ng's named variants too when ``more_voices``."""
    train_variants = tuple(v for v in VARIANTS if v not in HELD_OUT_VARIANTS)
    if more_voices:
        train_variants += NAMED_VARIANTS
    variants = train_variants if split == "train" else HELD_OUT_VARIANTS
    rng = random.Random(f"{seed}-{split}-voices")
    return [random_voice(rng, variants) for _ in range(count)]


def utterance_key(voice: Voice, split: str, index: int) -> str:
    """Kaldi style: the speaker id first, so keys sorted also group by speaker."""
    return f"{voice.accent}_{voice.variant}-{split}{index:05d}"


def write_split(data_dir: Path, rows: List[Dict[str, str]], extra_files: Sequence[str] = ()):
    """Write one data dir from rows with key, utt2spk, text, optional wav and extras."""
    data_dir.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda row: row["key"])
    write_map(data_dir / "text", {r["key"]: r["text"] for r in rows})
    utt2spk = {r["key"]: r["spk"] for r in rows}
    write_map(data_dir / "utt2spk", utt2spk)
    write_map(data_dir / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    if rows and "wav" in rows[0]:
        write_map(data_dir / "wav.scp", {r["key"]: r["wav"] for r in rows})
    for name in extra_files:
        write_map(data_dir / name, {r["key"]: r[name] for r in rows})


def spoken_splits(out_dir: Path, splits: Dict[str, list], text_of, extras=(), seed: int = 0,
                  noise_snr_db=None, jobs: int = 2, more_voices: bool = False,
                  train_voices_per_item: int = 1):
    """Synthesize every split's items (``text_of(item)`` is what is spoken) and write
    data dirs ``out_dir/<split>`` with the extra per-utterance fields of ``extras(item)``.
    Each training item is spoken ``train_voices_per_item`` times, by different draws of
    voice; dev and test items once."""
    if train_voices_per_item < 1:
        raise ValueError(f"train_voices_per_item must be >= 1, got {train_voices_per_item}")
    for split in SPLITS:
        items = splits[split] * (train_voices_per_item if split == "train" else 1)
        voices = voices_for(split, len(items), seed, more_voices)
        jobs_items, rows = [], []
        for index, (item, voice) in enumerate(zip(items, voices)):
            key = utterance_key(voice, split, index)
            jobs_items.append((key, text_of(item), voice))
            rows.append({"key": key, "spk": f"{voice.accent}_{voice.variant}",
                         **(extras(item) if extras else {})})
        paths = write_utterances(jobs_items, out_dir / "local" / "audio" / split,
                                 noise_snr_db=noise_snr_db, jobs=jobs)
        for row, path in zip(rows, paths):
            row["wav"] = str(Path(path).resolve())
        write_split(out_dir / split, rows, [k for k in rows[0] if k not in
                                            ("key", "spk", "text", "wav")] if rows else ())


def text_digest(out_dir: Path) -> str:
    """sha256 over data/*/text: the determinism check of a data build."""
    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update((Path(out_dir) / split / "text").read_bytes())
    return digest.hexdigest()
