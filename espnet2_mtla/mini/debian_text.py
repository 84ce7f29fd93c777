"""English text from Debian's package descriptions (the ``Translation-en`` indices).

Each package has a one-line synopsis and a long description of a few paragraphs. The
indices live under ``/var/lib/apt/lists`` once ``apt-get update -o Acquire::Languages=en``
has run; they are compressed (lz4, xz, gz), so they are read through ``apt-helper
cat-file``, which knows every compression apt uses.
"""

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional

APT_LISTS = Path("/var/lib/apt/lists")
APT_HELPER = "/usr/lib/apt/apt-helper"
FETCH_HINT = ("run 'apt-get update -o Acquire::Languages=en' (as root) to fetch Debian's "
              "Translation-en indices into /var/lib/apt/lists")
# (tools/install_mini_sources.sh fetches the English and the German ones)


@dataclass(frozen=True)
class Description:
    package: str
    synopsis: str
    paragraphs: tuple  # the long description, one string per paragraph
    md5: str = ""  # Description-md5: the md5 of the English description, in every language


def translation_files(lists_dir: Path = APT_LISTS, language: str = "en") -> List[Path]:
    """The main archive's Translation-<language> indices, sorted (security/updates
    excluded, so the text depends only on the release), each index once where it lies
    in two compressions (apt's .lz4 beside a carried .xz: its text would count twice)."""
    by_index = {}  # the archive (the name before _i18n_) -> its first file of the index
    for p in sorted(Path(lists_dir).glob(f"*_i18n_Translation-{language}*")):
        if "-security_" in p.name or "-updates_" in p.name or "-backports_" in p.name:
            continue
        stem = p.name.split(f"_i18n_Translation-{language}", 1)[0]
        by_index.setdefault(stem, p)
    files = sorted(by_index.values())
    if not files:
        hint = FETCH_HINT if language == "en" else (
            f"run 'apt-get update -o Acquire::Languages=en,{language}' (as root; "
            "tools/install_mini_sources.sh does it) to fetch Debian's "
            f"Translation-{language} indices into /var/lib/apt/lists")
        raise FileNotFoundError(f"no Translation-{language} index under {lists_dir}: {hint}")
    return files


def read_index(path: Path) -> str:
    """The text of one (possibly compressed) apt index file."""
    done = subprocess.run([APT_HELPER, "cat-file", str(path)], capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"cannot read {path}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode("utf-8", errors="replace")


def parse_descriptions(text: str, language: str = "en") -> List[Description]:
    """Records of a Translation-<language> index: ``Package:``, ``Description-md5:``,
    ``Description-<language>: synopsis`` and the indented long description whose
    paragraphs are separated by `` .`` lines."""
    field = f"Description-{language}: "
    out = []
    for record in text.split("\n\n"):
        package, synopsis, md5, paragraphs, current = None, None, "", [], []
        for line in record.split("\n"):
            if line.startswith("Package: "):
                package = line[len("Package: "):].strip()
            elif line.startswith("Description-md5: "):
                md5 = line[len("Description-md5: "):].strip()
            elif line.startswith(field):
                synopsis = line[len(field):].strip()
            elif line.startswith(" ") and synopsis is not None:
                if line.strip() == ".":
                    paragraphs.append(" ".join(current))
                    current = []
                else:
                    current.append(line.strip())
        if current:
            paragraphs.append(" ".join(current))
        if package and synopsis:
            out.append(Description(package, synopsis, tuple(p for p in paragraphs if p), md5))
    return out


def load_descriptions(lists_dir: Path = APT_LISTS) -> List[Description]:
    """All descriptions of the main archive, first occurrence of each package kept."""
    seen, out = set(), []
    for path in translation_files(lists_dir):
        for description in parse_descriptions(read_index(path)):
            if description.package not in seen:
                seen.add(description.package)
                out.append(description)
    return out


def synopses_by_md5(lists_dir: Path = APT_LISTS, language: str = "en") -> Dict[str, str]:
    """{Description-md5: synopsis} of the Translation-<language> indices. Every index
    names a description by the md5 of its English text, so the same key finds a
    package's English synopsis and its translations; the first of each key is kept."""
    out = {}
    for path in translation_files(lists_dir, language):
        for description in parse_descriptions(read_index(path), language):
            if description.md5:
                out.setdefault(description.md5, description.synopsis)
    return out


def split_sentences(paragraph: str) -> List[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", paragraph.strip()) if s]


def normalise(sentence: str) -> Optional[str]:
    """Lower-case words as a speaker would say them, or None when the sentence holds
    anything a synthesiser would read differently from its spelling (digits, symbols,
    abbreviations with dots, URLs)."""
    sentence = sentence.strip().rstrip(".!?").strip()
    if not re.fullmatch(r"[A-Za-z ,;:'-]+", sentence):
        return None
    words = re.sub(r"[,;:]", " ", sentence.lower()).replace("-", " ").split()
    if any(w.strip("'") != w for w in words):  # quotes, not apostrophes
        return None
    return " ".join(words)


def spoken_sentences(descriptions: Iterable[Description], min_words: int, max_words: int):
    """Distinct normalised sentences of the long descriptions, sorted."""
    found = set()
    for description in descriptions:
        for paragraph in description.paragraphs:
            for sentence in split_sentences(paragraph):
                words = normalise(sentence)
                if words and min_words <= len(words.split()) <= max_words:
                    found.add(words)
    return sorted(found)
