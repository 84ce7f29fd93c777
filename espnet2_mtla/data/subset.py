"""Subsets of a Kaldi-style data directory, chosen as Kaldi's subset_data_dir.sh chooses
them (utils/subset_data_dir.sh reaches this through ``datadir_cli``, run by path: standard
library only)."""

import random
from pathlib import Path
from typing import Dict, List

if __package__:
    from .datadir import copy_speaker_files, read_utterance_maps, write_utterance_maps
    from .kaldi_files import DataDirError, read_map
else:  # run by path from utils/ (through datadir_cli.py)
    from datadir import (  # type: ignore[no-redef]
        copy_speaker_files, read_utterance_maps, write_utterance_maps)
    from kaldi_files import DataDirError, read_map  # type: ignore[no-redef]


SUBSET_WAYS = ("even", "first", "last", "shortest", "per-spk", "speakers")


def subset_data_dir(source, target, num=None, way="even", utt_list=None, spk_list=None,
                    seed=0) -> List[str]:
    """A subset of a data directory, chosen as Kaldi's subset_data_dir.sh chooses it.

    With ``num``: ``even`` (default) ``num`` utterances spread evenly over utt2spk (the
    same lines as Kaldi's subset_scp.pl), ``first``/``last`` the first/last ``num``,
    ``shortest`` the ``num`` shortest (by utt2num_frames, else utt2dur), ``per-spk`` up to
    ``num`` per speaker spread over its utterances, ``speakers`` whole speakers in a
    random order (``seed``; not Kaldi's Perl generator) until ``num`` utterances are
    reached. Or the utterances of ``utt_list`` / the speakers of ``spk_list`` (files
    whose first field counts).
    """
    source = Path(source)
    maps = read_utterance_maps(source)
    utt2spk = maps["utt2spk"]
    keys = sorted(utt2spk, key=str.encode)
    if utt_list is not None:
        wanted = set(read_map(utt_list, allow_empty_values=True)[0])
        chosen = [key for key in keys if key in wanted]
    elif spk_list is not None:
        wanted = set(read_map(spk_list, allow_empty_values=True)[0])
        chosen = [key for key in keys if utt2spk[key] in wanted]
    else:
        if way not in SUBSET_WAYS:
            raise DataDirError(f"subset: unknown way {way!r}; one of {', '.join(SUBSET_WAYS)}")
        if num is None or num < 0:
            raise DataDirError(f"subset: the number of utterances must be >= 0, got {num}")
        if way in ("even", "first", "last", "shortest") and num > len(keys):
            raise DataDirError(f"{source}: cannot subset to {num} utterances, it has "
                               f"{len(keys)}")
        chosen = _choose(source, maps, keys, num, way, seed)
    chosen = set(chosen)
    subset = {}
    for name, entries in maps.items():
        if name == "wav.scp" and "segments" in maps:
            used = {maps["segments"][key].split()[0] for key in chosen}
            subset[name] = {key: value for key, value in entries.items() if key in used}
        else:
            subset[name] = {key: value for key, value in entries.items() if key in chosen}
    write_utterance_maps(Path(target), subset)
    copy_speaker_files(source, target, keep=set(subset["utt2spk"].values()))
    return [f"{target}: reducing #utt from {len(keys)} to {len(chosen)}"]


def _choose(source, maps, keys, num, way, seed) -> List[str]:
    """The utterances ``subset_data_dir`` keeps for a way that takes a number."""
    if way == "first":
        return keys[:num]
    if way == "last":
        return keys[len(keys) - num:]
    if way == "even":
        return [keys[index] for index in evenly_spread(len(keys), num)]
    if way == "shortest":
        name = next((n for n in ("utt2num_frames", "utt2dur") if n in maps), None)
        if name is None:
            raise DataDirError(f"{source}: --shortest needs utt2num_frames or utt2dur "
                               "(utils/data/get_utt2dur.sh writes utt2dur)")
        lengths = maps[name]
        return sorted(keys, key=lambda key: (float(lengths[key]), key.encode()))[:num]
    spk2utt: Dict[str, List[str]] = {}
    for key in keys:
        spk2utt.setdefault(maps["utt2spk"][key], []).append(key)
    speakers = sorted(spk2utt, key=str.encode)
    if way == "per-spk":
        chosen = []
        for speaker in speakers:
            utts = spk2utt[speaker]
            # every skip-th utterance, skip as large as still gives num of them
            skip = 1
            while num * (skip + 1) <= len(utts):
                skip += 1
            chosen += [utts[i] for i in range(0, len(utts), skip) if i + 2 <= num * skip]
        return chosen
    random.Random(seed).shuffle(speakers)
    chosen = []
    for speaker in speakers:  # whole speakers while fewer than num utterances are chosen
        if len(chosen) >= num:
            break
        chosen += spk2utt[speaker]
    return chosen


def evenly_spread(count: int, needed: int) -> List[int]:
    """Indices of ``needed`` of ``count`` lines spread evenly, by halving the range and the
    number needed (needed // 2 from the first half) down to single lines: the lines
    Kaldi's subset_scp.pl picks."""
    picked = []

    def pick(start, end, wanted):
        if wanted == 0:
            return
        if end - start == 1:
            picked.append(start)
            return
        half = (end - start) // 2
        pick(start, start + half, wanted // 2)
        pick(start + half, end, wanted - wanted // 2)

    if count:
        pick(0, count, needed)
    return picked
