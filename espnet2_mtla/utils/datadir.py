"""Kaldi-style data directories: read, validate and repair them.

A data directory holds ``key value`` text files (``wav.scp``, ``text``, ``utt2spk``,
``spk2utt``, optional ``segments``, ``utt2dur``, ...), each sorted by key (C locale,
byte order), one line per key. These functions read such files tolerantly (Windows line
endings, blank lines, trailing spaces), and ``fix_data_dir`` repairs a directory the
Kaldi way: sorted files, one line per key, only utterances present in every per-utterance
file, ``spk2utt`` regenerated from ``utt2spk``, and a report of what was dropped.
The shell wrappers in the top-level ``utils/`` call ``main``.
"""

import argparse
import shlex
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Tuple

# files with one line per utterance; wav.scp is keyed by recording when segments exists
UTTERANCE_FILES = ("text", "utt2spk", "utt2dur", "utt2num_frames", "utt2num_samples", "feats.scp",
                   "segments",
                   "prompt", "src_text", "utt2lang")


class DataDirError(ValueError):
    """A data directory that cannot be used: the message names the file and line."""


def read_map(path, allow_empty_values=False) -> Tuple[Dict[str, str], List[str]]:
    """(key -> value in first-seen order, problems) of a ``key value`` file.

    Tolerates CRLF endings and blank lines; a repeated key keeps its first line and is
    reported; a key without a value is reported (unless ``allow_empty_values``).
    """
    entries: Dict[str, str] = {}
    problems: List[str] = []
    with open(path, "rb") as stream:
        for number, raw_bytes in enumerate(stream, start=1):
            raw = decode_line(raw_bytes, path, number)
            line = raw.rstrip("\r\n").rstrip()
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            key = parts[0]
            value = parts[1].strip() if len(parts) > 1 else ""
            if not value and not allow_empty_values:
                problems.append(f"{path}:{number}: key {key} has no value")
                continue
            if key in entries:
                problems.append(f"{path}:{number}: duplicate key {key} (first line kept)")
                continue
            entries[key] = value
    return entries, problems


def decode_line(raw: bytes, path, number: int) -> str:
    """One line of a data file as UTF-8; other bytes are an error naming file and line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = raw[error.start:error.start + 1]
        raise DataDirError(
            f"{path}:{number}: byte 0x{bad.hex()} at column {error.start + 1} is not UTF-8 "
            "(data files must be UTF-8: convert the file, e.g. iconv -f latin1 -t utf-8)"
        ) from None


def write_map(path, entries: Dict[str, str]):
    """Write ``key value`` lines sorted by key in byte order (Kaldi's ``LC_ALL=C sort``)."""
    keys = sorted(entries, key=lambda key: key.encode("utf-8"))
    with open(path, "w", encoding="utf-8", newline="\n") as stream:
        for key in keys:
            stream.write(f"{key} {entries[key]}\n" if entries[key] else f"{key}\n")


def is_sorted(path) -> bool:
    with open(path, "rb") as stream:
        keys = [line.split(maxsplit=1)[0] for line in stream if line.strip()]
    return keys == sorted(keys)


def utt2spk_to_spk2utt(utt2spk: Dict[str, str]) -> Dict[str, str]:
    speakers: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk, key=str.encode):
        speakers.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in speakers.items()}


def spk2utt_to_utt2spk(spk2utt: Dict[str, str]) -> Dict[str, str]:
    return {utt: spk for spk, utts in spk2utt.items() for utt in utts.split()}


def _present(directory: Path):
    return [name for name in UTTERANCE_FILES if (directory / name).exists()]


def validate_data_dir(directory, require=("wav.scp", "text", "utt2spk")) -> List[str]:
    """Problems of a data directory (empty list: valid). Never changes it."""
    directory = Path(directory)
    problems = []
    for name in require:
        if not (directory / name).exists():
            problems.append(f"{directory}/{name}: missing")
    if problems:
        return problems
    maps = {}
    for name in (*_present(directory), "wav.scp", "spk2utt"):
        path = directory / name
        if not path.exists() or name in maps:
            continue
        maps[name], file_problems = read_map(path, allow_empty_values=name == "text")
        problems += file_problems
        if not is_sorted(path):
            problems.append(f"{path}: not sorted by key (LC_ALL=C sort)")
    utts = set(maps["utt2spk"])
    for name in _present(directory):
        missing, extra = utts - set(maps[name]), set(maps[name]) - utts
        if missing:
            problems.append(f"{directory}/{name}: {len(missing)} utterances of utt2spk missing,"
                            f" e.g. {sorted(missing)[0]}")
        if extra:
            problems.append(f"{directory}/{name}: {len(extra)} utterances not in utt2spk,"
                            f" e.g. {sorted(extra)[0]}")
    recordings = set(maps.get("wav.scp", utts))
    if "segments" in maps:
        used = {value.split()[0] for value in maps["segments"].values()}
        if used - recordings:
            problems.append(f"{directory}/segments: recordings missing from wav.scp, e.g. "
                            f"{sorted(used - recordings)[0]}")
    elif recordings != utts:
        problems.append(f"{directory}/wav.scp: keys differ from utt2spk "
                        f"({len(recordings ^ utts)} differ)")
    if "text" in maps:
        empty = sorted(key for key, value in maps["text"].items() if not value)
        if empty:
            problems.append(f"{directory}/text: {len(empty)} empty transcripts, e.g. {empty[0]}")
    if "spk2utt" in maps and spk2utt_to_utt2spk(maps["spk2utt"]) != maps["utt2spk"]:
        problems.append(f"{directory}/spk2utt: does not match utt2spk")
    return problems


def fix_data_dir(directory, drop_empty_text=True) -> List[str]:
    """Repair a data directory in place; returns a report of what was dropped or changed.

    Keeps the utterances present in every per-utterance file (and in wav.scp, or whose
    recording is in wav.scp when segments exists), sorts every file, regenerates
    spk2utt, and backs the originals up under ``<dir>/.backup``.
    """
    directory = Path(directory)
    if not (directory / "utt2spk").exists():
        raise DataDirError(f"{directory}/utt2spk: missing; fix_data_dir needs it")
    report = []
    backup = directory / ".backup"
    backup.mkdir(exist_ok=True)
    maps = {}
    for name in (*_present(directory), "wav.scp"):
        if (directory / name).exists() and name not in maps:
            shutil.copy2(directory / name, backup / name)
            maps[name], problems = read_map(directory / name, allow_empty_values=name == "text")
            report += problems
    keep = set(maps["utt2spk"])
    for name in _present(directory):
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
    every = set(maps["utt2spk"]).union(*(maps[name] for name in _present(directory)))
    dropped = every - keep
    if dropped:
        report.append(f"dropped {len(dropped)} of {len(every)} utterances not present in "
                      f"every file, e.g. {sorted(dropped)[0]}")
    for name in _present(directory):
        write_map(directory / name, {utt: maps[name][utt] for utt in keep})
    if "wav.scp" in maps:
        if "segments" in maps:
            used = {maps["segments"][utt].split()[0] for utt in keep}
        else:
            used = keep
        write_map(directory / "wav.scp", {key: maps["wav.scp"][key] for key in used})
    write_map(directory / "spk2utt",
              utt2spk_to_spk2utt({utt: maps["utt2spk"][utt] for utt in keep}))
    report.append(f"{directory}: {len(keep)} utterances kept")
    return report


def _per_utterance_maps(directory: Path) -> Dict[str, Dict[str, str]]:
    """Every per-utterance file of a directory, plus wav.scp, read (problems raise)."""
    maps = {}
    for name in (*_present(directory), "wav.scp"):
        if (directory / name).exists() and name not in maps:
            maps[name], problems = read_map(directory / name, allow_empty_values=name == "text")
            if problems:
                raise DataDirError("; ".join(problems) + f"; run utils/fix_data_dir.sh {directory}")
    return maps


def _write_dir(directory: Path, maps: Dict[str, Dict[str, str]]):
    directory.mkdir(parents=True, exist_ok=True)
    for name, entries in maps.items():
        write_map(directory / name, entries)
    write_map(directory / "spk2utt", utt2spk_to_spk2utt(maps["utt2spk"]))


def copy_data_dir(source, target, utt_prefix="", utt_suffix="", spk_prefix="", spk_suffix=""):
    """Copy a data directory, optionally renaming utterances and speakers (e.g. for
    speed-perturbed copies). Recordings are renamed with the utterances when there are
    no segments."""
    source, target = Path(source), Path(target)
    maps = _per_utterance_maps(source)
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
    _write_dir(target, renamed)


SPEED_COMMAND = "python -m espnet2_mtla.bin.speed_perturb --factor {factor}"


def perturb_data_dir_speed(source, target, factor: float) -> List[str]:
    """A copy of a data directory whose audio plays ``factor`` times as fast (Kaldi's
    speed perturbation): utterances, speakers and recordings get the prefix
    ``sp<factor>-``; wav.scp entries become pipes through espnet2_mtla.bin.speed_perturb;
    segment times and utt2dur are divided by the factor; utt2num_samples is dropped (it
    no longer holds)."""
    source, target = Path(source), Path(target)
    prefix = f"sp{factor:g}-"
    copy_data_dir(source, target, utt_prefix=prefix, spk_prefix=prefix)
    maps = _per_utterance_maps(target)
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
    maps.pop("utt2num_samples", None)
    (target / "utt2num_samples").unlink(missing_ok=True)
    _write_dir(target, maps)
    return [f"{target}: {len(maps['utt2spk'])} utterances at speed {factor:g}"]


UTTERANCE_TEXT_FILES = ("text", "utt2spk", "prompt", "src_text", "text.en")


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


def combine_data(target, sources) -> List[str]:
    """Union of data directories; a key present in two sources is an error naming both."""
    combined: Dict[str, Dict[str, str]] = {}
    owner: Dict[str, str] = {}
    names = None
    for source in map(Path, sources):
        maps = _per_utterance_maps(source)
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
    _write_dir(Path(target), combined)
    return [f"{target}: {len(owner)} utterances from {len(sources)} directories"]


def subset_data_dir(source, target, num=None, first=None, last=None, utt_list=None):
    """A subset: ``num`` evenly spaced utterances, the ``first``/``last`` N, or those in
    ``utt_list`` (a file of keys)."""
    source = Path(source)
    maps = _per_utterance_maps(source)
    keys = sorted(maps["utt2spk"], key=str.encode)
    if utt_list is not None:
        wanted = set(read_map(utt_list, allow_empty_values=True)[0])
        chosen = [key for key in keys if key in wanted]
    elif first is not None:
        chosen = keys[:first]
    elif last is not None:
        chosen = keys[-last:] if last else []
    elif num is not None:
        if num > len(keys):
            raise DataDirError(f"{source}: asked for {num} of {len(keys)} utterances")
        chosen = [keys[(index * len(keys)) // num] for index in range(num)]
    else:
        raise DataDirError("subset_data_dir needs num, first, last or utt_list")
    chosen = set(chosen)
    subset = {}
    for name, entries in maps.items():
        if name == "wav.scp" and "segments" in maps:
            used = {maps["segments"][key].split()[0] for key in chosen}
            subset[name] = {key: value for key, value in entries.items() if key in used}
        else:
            subset[name] = {key: value for key, value in entries.items() if key in chosen}
    _write_dir(Path(target), subset)


def get_utt2dur(directory) -> List[str]:
    """Write utt2dur (seconds) from segments, or from the audio headers of wav.scp."""
    import soundfile

    directory = Path(directory)
    maps = _per_utterance_maps(directory)
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


def split_scp(path, outputs: List[str]):
    """Split a key-value file into len(outputs) parts of consecutive lines, sizes within one."""
    entries, problems = read_map(path, allow_empty_values=True)
    if problems:
        raise DataDirError("; ".join(problems))
    keys = list(entries)
    if len(outputs) > len(keys):
        raise DataDirError(f"{path}: {len(keys)} lines cannot be split into {len(outputs)} parts")
    size, extra = divmod(len(keys), len(outputs))
    start = 0
    for index, output in enumerate(outputs):
        stop = start + size + (1 if index < extra else 0)
        with open(output, "w", encoding="utf-8", newline="\n") as stream:
            for key in keys[start:stop]:
                stream.write(f"{key} {entries[key]}\n" if entries[key] else f"{key}\n")
        start = stop


def filter_scp(keys_path, path, exclude=False) -> Dict[str, str]:
    """Lines of ``path`` whose key is (or with exclude, is not) the first field of keys_path."""
    keys = set(read_map(keys_path, allow_empty_values=True)[0])
    entries = read_map(path, allow_empty_values=True)[0]
    return {key: value for key, value in entries.items() if (key in keys) != exclude}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="report problems; exit 1 if any")
    validate.add_argument("--no-wav", action="store_true",
                          help="a text-only directory (src_text instead of audio)")
    validate.add_argument("dir")
    sub.add_parser("fix", help="repair in place and report").add_argument("dir")
    split = sub.add_parser("split", help="split a scp into N parts")
    split.add_argument("scp")
    split.add_argument("outputs", nargs="+")
    filt = sub.add_parser("filter", help="keep lines whose key is in a key list")
    filt.add_argument("--exclude", action="store_true")
    filt.add_argument("keys")
    filt.add_argument("scp")
    to_spk2utt = sub.add_parser("utt2spk_to_spk2utt")
    to_spk2utt.add_argument("file")
    to_utt2spk = sub.add_parser("spk2utt_to_utt2spk")
    to_utt2spk.add_argument("file")
    copy = sub.add_parser("copy", help="copy, optionally renaming keys")
    for option in ("--utt-prefix", "--utt-suffix", "--spk-prefix", "--spk-suffix"):
        copy.add_argument(option, default="")
    copy.add_argument("source")
    copy.add_argument("target")
    combine = sub.add_parser("combine", help="union of directories")
    combine.add_argument("target")
    combine.add_argument("sources", nargs="+")
    subset = sub.add_parser("subset", help="a subset of utterances")
    group = subset.add_mutually_exclusive_group(required=True)
    group.add_argument("--first", type=int)
    group.add_argument("--last", type=int)
    group.add_argument("--utt-list")
    group.add_argument("--num", type=int)
    subset.add_argument("source")
    subset.add_argument("target")
    sub.add_parser("utt2dur", help="write utt2dur").add_argument("dir")
    speed = sub.add_parser("speed", help="a speed-perturbed copy")
    speed.add_argument("factor", type=float)
    speed.add_argument("source")
    speed.add_argument("target")
    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            require = ("text", "utt2spk") if args.no_wav else ("wav.scp", "text", "utt2spk")
            problems = validate_data_dir(args.dir, require)
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                print(f"{args.dir}: not valid; run utils/fix_data_dir.sh {args.dir}",
                      file=sys.stderr)
                return 1
            print(f"{args.dir}: valid", file=sys.stderr)
        elif args.command == "fix":
            for line in fix_data_dir(args.dir):
                print(line, file=sys.stderr)
        elif args.command == "split":
            split_scp(args.scp, args.outputs)
        elif args.command == "filter":
            for key, value in filter_scp(args.keys, args.scp, args.exclude).items():
                print(f"{key} {value}" if value else key)
        elif args.command == "utt2spk_to_spk2utt":
            for key, value in utt2spk_to_spk2utt(read_map(args.file)[0]).items():
                print(f"{key} {value}")
        elif args.command == "copy":
            copy_data_dir(args.source, args.target, args.utt_prefix, args.utt_suffix,
                          args.spk_prefix, args.spk_suffix)
        elif args.command == "combine":
            for line in combine_data(args.target, args.sources):
                print(line, file=sys.stderr)
        elif args.command == "subset":
            subset_data_dir(args.source, args.target, args.num, args.first, args.last,
                            args.utt_list)
        elif args.command == "utt2dur":
            for line in get_utt2dur(args.dir):
                print(line, file=sys.stderr)
        elif args.command == "speed":
            for line in perturb_data_dir_speed(args.source, args.target, args.factor):
                print(line, file=sys.stderr)
        elif args.command == "spk2utt_to_utt2spk":
            mapping = spk2utt_to_utt2spk(read_map(args.file)[0])
            for key in sorted(mapping, key=str.encode):
                print(f"{key} {mapping[key]}")
    except (DataDirError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
