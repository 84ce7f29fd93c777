"""Kaldi's key-value files (``text``, ``utt2spk``, ``wav.scp``, ...): read them
tolerantly (Windows line endings, blank lines, trailing spaces), write them sorted (C
locale, byte order), convert utt2spk <-> spk2utt, and split and filter scp files as
``split_scp.pl`` and ``filter_scp.pl`` do (bytes in, bytes out). Standard library only:
the utils/ scripts run ``datadir_cli.py`` by path, without the package's torch.
"""

import sys
from typing import Dict, List, Tuple


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


def raw_lines(path) -> List[bytes]:
    """The lines of a file (or of stdin for None / "-") as bytes, endings kept: the
    scp tools print what they read unchanged, as Kaldi's do."""
    if path is None or str(path) == "-":
        return sys.stdin.buffer.readlines()
    with open(path, "rb") as stream:
        return stream.readlines()


def _split_by_speaker(lines: List[bytes], utt2spk_path, parts: int, path) -> List[List[bytes]]:
    """Kaldi's --utt2spk split: whole speakers per part, about equal numbers of lines.

    Speakers in order of first appearance go to parts by their index (speaker i of S to
    part i * parts // S); then, while it makes two neighbouring parts closer in size,
    a part's last speaker moves to the next part or its first speaker to the previous.
    """
    utt2spk = {}
    for number, line in enumerate(raw_lines(utt2spk_path), start=1):
        fields = line.split()
        if len(fields) != 2:
            raise DataDirError(f"{utt2spk_path}:{number}: bad line (want 'utterance speaker')")
        utt2spk[fields[0]] = fields[1]
    speakers, lines_of = [], {}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            raise DataDirError(f"{path}:{number}: empty or space-only line")
        if fields[0] not in utt2spk:
            raise DataDirError(f"{path}:{number}: utterance {fields[0].decode(errors='replace')} "
                               f"is not in {utt2spk_path}")
        speaker = utt2spk[fields[0]]
        if speaker not in lines_of:
            speakers.append(speaker)
            lines_of[speaker] = []
        lines_of[speaker].append(line)
    if len(speakers) < parts:
        raise DataDirError(f"{path}: {len(speakers)} speakers cannot be split into {parts} "
                           "parts (each part needs a speaker)")
    groups = [[] for _ in range(parts)]
    for index, speaker in enumerate(speakers):
        groups[index * parts // len(speakers)].append(speaker)
    size = [sum(len(lines_of[s]) for s in group) for group in groups]
    changed = True
    while changed:
        changed = False
        for part in range(parts):
            if part < parts - 1 and groups[part]:
                count = len(lines_of[groups[part][-1]])
                if abs((size[part + 1] + count) - (size[part] - count)) < abs(size[part + 1] - size[part]):
                    groups[part + 1].insert(0, groups[part].pop())
                    size[part] -= count
                    size[part + 1] += count
                    changed = True
            if part > 0 and groups[part]:
                count = len(lines_of[groups[part][0]])
                if abs((size[part] - count) - (size[part - 1] + count)) < abs(size[part] - size[part - 1]):
                    groups[part - 1].append(groups[part].pop(0))
                    size[part] -= count
                    size[part - 1] += count
                    changed = True
    return [[line for speaker in group for line in lines_of[speaker]] for group in groups]


def split_scp(path, outputs: List, utt2spk=None, job=None):
    """Split a file into len(outputs) parts of consecutive lines, as Kaldi's split_scp.pl.

    Without ``utt2spk`` the sizes differ by at most one line (the first parts get the
    extra lines); with it, parts follow speaker boundaries. ``job``: write only that
    (0-based) part; the other entries of ``outputs`` may be None. An output of None or
    "-" is the standard output.
    """
    lines = raw_lines(path)
    parts = len(outputs)
    if not lines:
        raise DataDirError(f"{path}: empty; nothing to split")
    if utt2spk is not None:
        groups = _split_by_speaker(lines, utt2spk, parts, path)
    else:
        if len(lines) < parts:
            raise DataDirError(f"{path}: {len(lines)} lines cannot be split into {parts} parts")
        size, extra = divmod(len(lines), parts)
        groups, start = [], 0
        for index in range(parts):
            stop = start + size + (1 if index < extra else 0)
            groups.append(lines[start:stop])
            start = stop
    for index, (output, group) in enumerate(zip(outputs, groups)):
        if job is not None and index != job:
            continue
        if output is None or str(output) == "-":
            sys.stdout.buffer.writelines(group)
            sys.stdout.buffer.flush()
        else:
            with open(output, "wb") as stream:
                stream.writelines(group)


def filter_scp(keys_path, path=None, exclude=False, field=1) -> List[bytes]:
    """The lines of ``path`` (stdin for None) whose ``field``-th field (1-based) is (with
    ``exclude``: is not) the first field of a line of ``keys_path``; lines unchanged."""
    keys = set()
    for number, line in enumerate(raw_lines(keys_path), start=1):
        fields = line.split()
        if not fields:
            raise DataDirError(f"{keys_path}:{number}: empty line in the id list")
        keys.add(fields[0])
    kept = []
    for number, line in enumerate(raw_lines(path), start=1):
        fields = line.split()
        if len(fields) < field:
            raise DataDirError(f"{path or 'stdin'}:{number}: no field {field}")
        if (fields[field - 1] in keys) != exclude:
            kept.append(line)
    return kept
