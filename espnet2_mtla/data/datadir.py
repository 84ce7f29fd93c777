"""Kaldi-style data directories: read, validate and repair them.

A data directory holds ``key value`` text files (``wav.scp``, ``text``, ``utt2spk``,
``spk2utt``, optional ``segments``, ``utt2dur``, ...), each sorted by key (C locale,
byte order), one line per key. These functions read such files tolerantly (Windows line
endings, blank lines, trailing spaces), and ``fix_data_dir`` repairs a directory the
Kaldi way: sorted files, one line per key, only utterances present in every per-utterance
file, ``spk2utt`` regenerated from ``utt2spk``, and a report of what was dropped.
The files themselves are read and written by ``kaldi_files``, subsets are chosen by
``subset``; the Kaldi-named scripts in
the top-level ``utils/`` reach these functions through ``datadir_cli`` (Kaldi's calling
forms), which they run by path: only the standard library is needed (and soundfile for
``get_utt2dur.sh`` on audio).
"""

import shlex
import shutil
from pathlib import Path
from typing import Dict, List

if __package__:
    from .kaldi_files import (DataDirError, is_sorted, read_map, spk2utt_to_utt2spk,
                              utt2spk_to_spk2utt, write_map)
else:  # run by path from utils/ (through datadir_cli.py): standard library only
    from kaldi_files import (  # type: ignore[no-redef]
        DataDirError, is_sorted, read_map, spk2utt_to_utt2spk, utt2spk_to_spk2utt, write_map)


# the files with one line per utterance (wav.scp is keyed by recording when segments
# exists): those that describe its audio, and the rest (labels, texts, speaker), which
# stored features keep beside their own feats.scp (copy_utterance_files)
UTTERANCE_AUDIO_FILES = ("utt2dur", "utt2num_frames", "utt2num_samples", "feats.scp", "segments")
UTTERANCE_FILES = ("text", "utt2spk", *UTTERANCE_AUDIO_FILES,
                   "prompt", "src_text", "text.en", "utt2lang")


SPEAKER_FILES = ("spk2gender", "spk2warp", "cmvn.scp")  # one line per speaker


def _present(directory: Path, extra=()):
    """The per-utterance files of ``directory`` (and of ``extra``) that exist."""
    names = dict.fromkeys((*UTTERANCE_FILES, *extra))
    return [name for name in names if (directory / name).exists()]


def validate_data_dir(directory, no_feats=False, no_text=False, no_wav=False,
                      non_print=False, no_spk_sort=False) -> List[str]:
    """Problems of a data directory (empty list: valid), as Kaldi's validate_data_dir.sh
    finds them. Never changes it.

    utt2spk and spk2utt are required, and text, wav.scp and feats.scp unless
    ``no_text``/``no_wav``/``no_feats`` (a file that is present is checked either way).
    Every file sorted by key with one line per key; per-utterance files with utt2spk's
    keys (wav.scp by recording when segments exists); utt2spk sorted by speaker too
    unless ``no_spk_sort`` (speaker ids prefixes of utterance ids); no non-printable
    characters in text unless ``non_print``; no <s>, </s> or #0 in text; no empty
    transcript; positive durations and frame counts.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return [f"{directory}: no such directory"]
    problems = []
    required = {"utt2spk": "run utils/fix_data_dir.sh", "spk2utt": "run utils/fix_data_dir.sh"}
    for name, flag, waived in (("text", "--no-text", no_text), ("wav.scp", "--no-wav", no_wav),
                               ("feats.scp", "--no-feats", no_feats)):
        if not waived:
            required[name] = f"if this is by design, pass {flag}"
    for name, hint in required.items():
        if not (directory / name).exists():
            problems.append(f"{directory}/{name}: missing ({hint})")
    if not (directory / "utt2spk").exists():
        return problems
    maps = {}
    for name in (*_present(directory), "wav.scp", "spk2utt", *SPEAKER_FILES):
        path = directory / name
        if not path.exists() or name in maps:
            continue
        maps[name], file_problems = read_map(path, allow_empty_values=name == "text")
        problems += file_problems
        if not is_sorted(path):
            problems.append(f"{path}: not sorted by key (LC_ALL=C sort)")
    bad_speakers = sorted(key for key, value in maps["utt2spk"].items() if len(value.split()) != 1)
    if bad_speakers:
        problems.append(f"{directory}/utt2spk: wrong format (not 'utterance speaker'), e.g. "
                        f"{bad_speakers[0]}")
    if not no_spk_sort:
        pairs = list(maps["utt2spk"].items())  # file order (read_map keeps it)
        by_speaker = sorted(pairs, key=lambda kv: (kv[1].encode(), f"{kv[0]} {kv[1]}".encode()))
        if pairs != by_speaker:
            problems.append(f"{directory}/utt2spk: not sorted by speaker as well as by "
                            "utterance (make speaker ids prefixes of utterance ids, or pass "
                            "--no-spk-sort)")
    utts = set(maps["utt2spk"])
    for name in _present(directory):
        missing, extra = utts - set(maps[name]), set(maps[name]) - utts
        if missing:
            problems.append(f"{directory}/{name}: {len(missing)} utterances of utt2spk missing,"
                            f" e.g. {sorted(missing)[0]}")
        if extra:
            problems.append(f"{directory}/{name}: {len(extra)} utterances not in utt2spk,"
                            f" e.g. {sorted(extra)[0]}")
    if "segments" in maps:
        if "wav.scp" not in maps:
            problems.append(f"{directory}/segments: present but there is no wav.scp")
        recordings = set(maps.get("wav.scp", {}))
        used = set()
        for key, value in maps["segments"].items():
            fields = value.split()
            if len(fields) != 3 or not _is_number(fields[1]) or not _is_number(fields[2]) \
                    or float(fields[2]) <= float(fields[1]):
                problems.append(f"{directory}/segments: bad line for {key} (want "
                                "'utterance recording start end', end > start)")
                break
            used.add(fields[0])
        if "wav.scp" in maps and used - recordings:
            problems.append(f"{directory}/segments: recordings missing from wav.scp, e.g. "
                            f"{sorted(used - recordings)[0]}")
    elif "wav.scp" in maps and set(maps["wav.scp"]) != utts:
        problems.append(f"{directory}/wav.scp: keys differ from utt2spk "
                        f"({len(set(maps['wav.scp']) ^ utts)} differ)")
    if "text" in maps:
        empty = sorted(key for key, value in maps["text"].items() if not value)
        if empty:
            problems.append(f"{directory}/text: {len(empty)} empty transcripts, e.g. {empty[0]}")
        if not non_print:
            odd = sorted(key for key, value in maps["text"].items()
                         if any(not c.isprintable() and not c.isspace() for c in value))
            if odd:
                problems.append(f"{directory}/text: {len(odd)} transcripts with non-printable "
                                f"characters, e.g. {odd[0]} (pass --non-print to allow them)")
        illegal = sorted(key for key, value in maps["text"].items()
                         if {"<s>", "</s>", "#0"} & set(value.split()))
        if illegal:
            problems.append(f"{directory}/text: the symbols <s>, </s> and #0 are not allowed, "
                            f"e.g. in {illegal[0]}")
    for name, integral in (("utt2dur", False), ("utt2num_frames", True)):
        for key, value in maps.get(name, {}).items():
            if not _is_number(value) or float(value) <= 0 or (integral and not value.isdigit()):
                problems.append(f"{directory}/{name}: bad value {value!r} for {key}")
                break
    if "spk2utt" in maps and spk2utt_to_utt2spk(maps["spk2utt"]) != maps["utt2spk"]:
        problems.append(f"{directory}/spk2utt: does not match utt2spk")
    speakers = set(utt2spk_to_spk2utt(maps["utt2spk"]))
    for name in SPEAKER_FILES:
        if name in maps and set(maps[name]) != speakers:
            problems.append(f"{directory}/{name}: speakers differ from spk2utt")
    return problems


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def fix_data_dir(directory, drop_empty_text=True, utt_extra_files=(),
                 spk_extra_files=()) -> List[str]:
    """Repair a data directory in place; returns a report of what was dropped or changed.

    Keeps the utterances present in every per-utterance file (and in wav.scp, or whose
    recording is in wav.scp when segments exists), sorts every file, regenerates
    spk2utt, filters the per-speaker files (spk2gender, spk2warp, cmvn.scp) to the
    speakers left, and backs the originals up under ``<dir>/.backup``. As Kaldi's
    ``--utt_extra_files`` / ``--spk_extra_files``, more per-utterance / per-speaker files
    can be named.
    """
    directory = Path(directory)
    if not (directory / "utt2spk").exists():
        raise DataDirError(f"{directory}/utt2spk: missing; fix_data_dir needs it")
    report = []
    backup = directory / ".backup"
    backup.mkdir(exist_ok=True)
    maps = {}
    for name in (*_present(directory, utt_extra_files), "wav.scp"):
        if (directory / name).exists() and name not in maps:
            shutil.copy2(directory / name, backup / name)
            maps[name], problems = read_map(directory / name, allow_empty_values=name == "text")
            report += problems
    keep = set(maps["utt2spk"])
    for name in _present(directory, utt_extra_files):
        keep &= set(maps[name])
    if "segments" in maps:
        keep = {utt for utt in keep if maps["segments"][utt].split()[0] in maps["wav.scp"]}
    elif "wav.scp" in maps:
        keep &= set(maps["wav.scp"])
    if drop_empty_text and "text" in maps:
        empty = {utt for utt in keep if not maps["text"][utt]}
        if empty:
            report.append(f"dropped {len(empty)} utterances with an empty transcript, e.g. "
                          f"{sorted(empty)[0]}")
        keep -= empty
    present = _present(directory, utt_extra_files)
    every = set(maps["utt2spk"]).union(*(maps[name] for name in present))
    dropped = every - keep
    if dropped:
        report.append(f"dropped {len(dropped)} of {len(every)} utterances not present in "
                      f"every file, e.g. {sorted(dropped)[0]}")
    for name in _present(directory, utt_extra_files):
        write_map(directory / name, {utt: maps[name][utt] for utt in keep})
    if "wav.scp" in maps:
        if "segments" in maps:
            used = {maps["segments"][utt].split()[0] for utt in keep}
        else:
            used = keep
        write_map(directory / "wav.scp", {key: maps["wav.scp"][key] for key in used})
    write_map(directory / "spk2utt",
              utt2spk_to_spk2utt({utt: maps["utt2spk"][utt] for utt in keep}))
    speakers = {maps["utt2spk"][utt] for utt in keep}
    for name in (*SPEAKER_FILES, *spk_extra_files):
        if (directory / name).exists():
            shutil.copy2(directory / name, backup / name)
            entries, problems = read_map(directory / name)
            report += problems
            write_map(directory / name, {k: v for k, v in entries.items() if k in speakers})
    report.append(f"{directory}: {len(keep)} utterances kept")
    return report


def read_utterance_maps(directory: Path, extra=()) -> Dict[str, Dict[str, str]]:
    """Every per-utterance file of a directory (and ``extra``), plus wav.scp, read
    (problems raise)."""
    if not (directory / "utt2spk").exists():
        raise DataDirError(f"{directory}/utt2spk: missing")
    maps = {}
    for name in (*_present(directory, extra), "wav.scp"):
        if (directory / name).exists() and name not in maps:
            maps[name], problems = read_map(directory / name, allow_empty_values=name == "text")
            if problems:
                raise DataDirError("; ".join(problems) + f"; run utils/fix_data_dir.sh {directory}")
    return maps


def write_utterance_maps(directory: Path, maps: Dict[str, Dict[str, str]]):
    directory.mkdir(parents=True, exist_ok=True)
    for name, entries in maps.items():
        write_map(directory / name, entries)
    write_map(directory / "spk2utt", utt2spk_to_spk2utt(maps["utt2spk"]))


def copy_data_dir(source, target, utt_prefix="", utt_suffix="", spk_prefix="", spk_suffix=""):
    """Copy a data directory, optionally renaming utterances and speakers (e.g. for
    speed-perturbed copies). Recordings are renamed with the utterances when there are
    no segments; the per-speaker files (spk2gender, spk2warp, cmvn.scp) follow the
    renamed speakers, as in Kaldi's copy_data_dir.sh."""
    source, target = Path(source), Path(target)
    maps = read_utterance_maps(source)
    utt = lambda key: f"{utt_prefix}{key}{utt_suffix}"
    renamed = {}
    for name, entries in maps.items():
        if name == "wav.scp" and "segments" in maps:
            renamed[name] = {utt(key): value for key, value in entries.items()}
        elif name == "utt2spk":
            renamed[name] = {utt(k): f"{spk_prefix}{v}{spk_suffix}" for k, v in entries.items()}
        elif name == "segments":
            renamed[name] = {utt(k): " ".join([utt(v.split()[0]), *v.split()[1:]])
                             for k, v in entries.items()}
        else:
            renamed[name] = {utt(key): value for key, value in entries.items()}
    write_utterance_maps(target, renamed)
    copy_speaker_files(source, target, rename=lambda key: f"{spk_prefix}{key}{spk_suffix}")


def copy_speaker_files(source, target, rename=lambda key: key, keep=None):
    """Copy the per-speaker files (spk2gender, spk2warp, cmvn.scp) present in ``source``
    to ``target``: speakers renamed by ``rename``, only those in ``keep`` (when given)."""
    for name in SPEAKER_FILES:
        if (Path(source) / name).exists():
            entries = read_map(Path(source) / name)[0]
            write_map(Path(target) / name, {rename(k): v for k, v in entries.items()
                                            if keep is None or k in keep})


SPEED_COMMAND = "python -m espnet2_mtla.bin.speed_perturb --factor {factor}"


def perturb_data_dir_speed(source, target, factor: float) -> List[str]:
    """A copy of a data directory whose audio plays ``factor`` times as fast (Kaldi's
    speed perturbation): utterances, speakers and recordings get the prefix
    ``sp<factor>-``; wav.scp entries become pipes through espnet2_mtla.bin.speed_perturb;
    segment times and utt2dur are divided by the factor; what describes the unperturbed
    audio is dropped (utt2num_samples, and features to extract again: feats.scp,
    utt2num_frames, cmvn.scp), as Kaldi's script carries no features."""
    source, target = Path(source), Path(target)
    prefix = f"sp{factor:g}-"
    copy_data_dir(source, target, utt_prefix=prefix, spk_prefix=prefix)
    maps = read_utterance_maps(target)
    command = SPEED_COMMAND.format(factor=f"{factor:g}")
    for key, entry in maps["wav.scp"].items():
        entry = entry.strip()
        if entry.endswith("|"):
            maps["wav.scp"][key] = f"{entry[:-1].strip()} | {command} - |"
        else:
            maps["wav.scp"][key] = f"{command} {shlex.quote(entry)} |"
    for key, value in maps.get("segments", {}).items():
        recording, start, end = value.split()
        maps["segments"][key] = f"{recording} {float(start) / factor:.3f} {float(end) / factor:.3f}"
    for key, value in maps.get("utt2dur", {}).items():
        maps["utt2dur"][key] = f"{float(value) / factor:.3f}"
    for name in ("utt2num_samples", "feats.scp", "utt2num_frames", "cmvn.scp"):
        maps.pop(name, None)
        (target / name).unlink(missing_ok=True)
    write_utterance_maps(target, maps)
    return [f"{target}: {len(maps['utt2spk'])} utterances at speed {factor:g}"]


UTTERANCE_TEXT_FILES = tuple(n for n in UTTERANCE_FILES if n not in UTTERANCE_AUDIO_FILES)


def copy_utterance_files(source, target, keys, names=UTTERANCE_TEXT_FILES):
    """Copy the per-utterance files ``names`` present in ``source`` to ``target``, keeping
    only ``keys`` (e.g. the utterances whose features were stored), and spk2utt to match."""
    source, target = Path(source), Path(target)
    for name in names:
        if (source / name).exists():
            entries = read_map(source / name, allow_empty_values=True)[0]
            write_map(target / name, {k: v for k, v in entries.items() if k in keys})
    if (target / "utt2spk").exists():
        write_map(target / "spk2utt", utt2spk_to_spk2utt(read_map(target / "utt2spk")[0]))


def combine_data(target, sources, extra_files=()) -> List[str]:
    """Union of data directories; a key present in two sources is an error naming both.
    ``extra_files``: more per-utterance files to combine (Kaldi's ``--extra-files``);
    each must be in every source."""
    combined: Dict[str, Dict[str, str]] = {}
    owner: Dict[str, str] = {}
    names = None
    for source in map(Path, sources):
        for name in extra_files:
            if not (source / name).exists():
                raise DataDirError(f"{source}/{name}: missing (named in --extra-files)")
        maps = read_utterance_maps(source, extra_files)
        present = set(maps)
        if names is not None and present != names:
            raise DataDirError(f"{source} has files {sorted(present)}, the first source "
                               f"{sorted(names)}: combine directories with the same files")
        names = present
        for key in maps["utt2spk"]:
            if key in owner:
                raise DataDirError(f"utterance {key} is in both {owner[key]} and {source}")
            owner[key] = str(source)
        for name, entries in maps.items():
            combined.setdefault(name, {}).update(entries)
    write_utterance_maps(Path(target), combined)
    return [f"{target}: {len(owner)} utterances from {len(sources)} directories"]


def get_utt2dur(directory) -> List[str]:
    """Write utt2dur (seconds) from segments, or from the audio headers of wav.scp."""
    import soundfile

    directory = Path(directory)
    maps = read_utterance_maps(directory)
    durations = {}
    if "segments" in maps:
        for key, value in maps["segments"].items():
            _, start, end = value.split()[:3]
            durations[key] = f"{float(end) - float(start):.3f}"
    else:
        for key, path in maps["wav.scp"].items():
            if path.endswith("|"):
                raise DataDirError(f"{directory}/wav.scp: utterance {key} is a pipe; "
                                   "format the audio first (mtla.sh stage 3)")
            try:
                info = soundfile.info(path)
            except Exception as error:
                raise DataDirError(f"{directory}/wav.scp: utterance {key}: cannot read "
                                   f"{path}: {error}")
            durations[key] = f"{info.frames / info.samplerate:.3f}"
    write_map(directory / "utt2dur", durations)
    return [f"{directory}/utt2dur: {len(durations)} utterances"]
