"""English -> German pairs of Debian package synopses: the German translations of the
Debian Description Translation Project (the ``Translation-de`` index) matched to the
English descriptions (``Translation-en``) by ``Description-md5``, the key both indices
give a description. A second source of sentence pairs for mini_en_de beside the gettext
catalogs (bookworm: 12,886 matched synopses; 6,831 plain pairs of 4-12 English words,
7,550 of 3-12)."""

import re
from pathlib import Path
from typing import Dict

from espnet2_mtla.mini import debian_text
from espnet2_mtla.mini.gettext_pairs import GERMAN

# plain words as espeak-ng reads them: letters, spaces, commas, apostrophes, hyphens (a
# synopsis may start lower-case; digits, symbols and abbreviations with dots are left out)
ENGLISH = re.compile(r"[A-Za-z][A-Za-z ,'-]*")


def synopsis_pairs(lists_dir: Path, min_words: int, max_words: int) -> Dict[str, str]:
    """{English synopsis: German synopsis} of plain words, min_words..max_words English
    words; the first German translation of each English synopsis wins (index order)."""
    english = debian_text.synopses_by_md5(lists_dir, "en")
    german = debian_text.synopses_by_md5(lists_dir, "de")
    pairs = {}
    for md5, target in german.items():
        source = english.get(md5)
        if (source and ENGLISH.fullmatch(source) and GERMAN.fullmatch(target)
                and min_words <= len(source.split()) <= max_words):
            pairs.setdefault(source, target)
    return pairs
