"""mini_en_de's second pair source: Debian's German package synopses (Translation-de)
matched to the English ones by Description-md5, read from indices in apt's layout."""

import os
import shutil
from pathlib import Path

import pytest

from espnet2_mtla.bin.make_mini_corpus import main as make_mini_corpus
from espnet2_mtla.mini import debian_text
from espnet2_mtla.mini.synopsis_pairs import synopsis_pairs
from espnet2_mtla.data.kaldi_files import read_map

pytestmark = pytest.mark.skipif(not os.path.exists(debian_text.APT_HELPER),
                                reason="apt-helper (Debian's apt) reads the index files")
PREFIX = "deb.debian.org_debian_dists_bookworm_main_i18n_Translation-"
ENGLISH = [  # (md5, English synopsis)
    ("a1", "Real-time strategy game of ancient warfare"),
    ("a2", "Redis client for Erlang applications"),
    ("a3", "library for version 2 of the protocol"),  # a digit: not spoken as spelt
    ("a4", "tiny tool"),  # too short
    ("a5", "shared resources for creative applications"),
    ("a6", "Redis client for Erlang applications"),  # the same English again
]
GERMAN = [
    ("a1", "Echtzeit-Strategiespiel über antike Kriegsführung"),
    ("a2", "Redis-Client für Erlang-Anwendungen"),
    ("a3", "Bibliothek für Version 2 des Protokolls"),
    ("a4", "kleines Werkzeug"),
    ("a5", "Gemeinsame Ressourcen (kreativ)"),  # brackets: not plain German
    ("a6", "Ein anderer Redis-Client"),  # a second translation of a2's English
    ("zz", "Ohne englische Beschreibung hier"),  # no English description with this md5
]


def write_index(folder: Path, language: str, records):
    folder.mkdir(parents=True, exist_ok=True)
    text = "\n".join(f"Package: {language}{md5}\nDescription-md5: {md5}\nDescription-{language}: "
                     f"{synopsis}\n Long description line.\n" for md5, synopsis in records)
    (folder / f"{PREFIX}{language}").write_text(text)


def test_pairs_match_by_md5_and_keep_plain_words_of_the_length(tmp_path):
    write_index(tmp_path, "en", ENGLISH)
    write_index(tmp_path, "de", GERMAN)
    assert synopsis_pairs(tmp_path, 3, 12) == {
        "Real-time strategy game of ancient warfare":
            "Echtzeit-Strategiespiel über antike Kriegsführung",
        "Redis client for Erlang applications": "Redis-Client für Erlang-Anwendungen",
    }
    assert synopsis_pairs(tmp_path, 2, 12)["tiny tool"] == "kleines Werkzeug"
    assert "Real-time strategy game of ancient warfare" not in synopsis_pairs(tmp_path, 3, 5)


def test_an_index_in_two_compressions_is_read_once(tmp_path):
    """apt's index beside a carried .xz of it (bench/gpu_carry.sh recompresses them):
    the text counts once; another archive's index still counts, security's does not."""
    import lzma

    write_index(tmp_path, "en", ENGLISH)
    plain = tmp_path / f"{PREFIX}en"
    (tmp_path / f"{PREFIX}en.xz").write_bytes(lzma.compress(plain.read_bytes()))
    other = tmp_path / "ftp.example.org_debian_dists_bookworm_main_i18n_Translation-en"
    other.write_text("Package: extra\nDescription-md5: b1\nDescription-en: Extra synopsis\n")
    security = tmp_path / ("deb.debian.org_debian-security_dists_bookworm-security_main_"
                           "i18n_Translation-en")
    security.write_text(plain.read_text())
    assert debian_text.translation_files(tmp_path) == [plain, other]
    synopses = [d.synopsis for d in debian_text.load_descriptions(tmp_path)]
    assert sorted(synopses) == sorted([e for _, e in ENGLISH] + ["Extra synopsis"])
    plain.unlink()  # the .xz alone is read through apt-helper as the plain file was
    assert debian_text.translation_files(tmp_path)[0].name.endswith(".xz")
    assert len(debian_text.load_descriptions(tmp_path)) == len(ENGLISH) + 1


def test_a_missing_german_index_names_it_and_how_to_fetch_it(tmp_path):
    write_index(tmp_path, "en", ENGLISH)
    with pytest.raises(FileNotFoundError, match="Translation-de.*Languages=en,de"):
        synopsis_pairs(tmp_path, 3, 12)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")
def test_st_corpus_from_synopses_speaks_the_english_and_targets_the_german(tmp_path):
    triples = [(a, n, u) for a in ("simple", "fast", "small") for n in ("client", "library")
               for u in ("desktop", "server")]
    english = [(f"b{i}", f"{a} {n} for {u} applications") for i, (a, n, u) in enumerate(triples)]
    german = [(f"b{i}", f"{n.capitalize()} {a} für {u} Anwendungen")
              for i, (a, n, u) in enumerate(triples)]
    write_index(tmp_path / "lists", "en", english)
    write_index(tmp_path / "lists", "de", german)
    out = tmp_path / "data"
    assert make_mini_corpus(["st", "--out", str(out), "--st_source", "synopses",
                             "--apt_lists", str(tmp_path / "lists"), "--num_train", "6",
                             "--num_dev", "3", "--num_test", "3", "--jobs", "2"]) == 0
    by_english = {e: g for (_, e), (_, g) in zip(english, german)}
    seen = set()
    for split in ("train", "dev", "test"):
        target = read_map(out / split / "text")[0]
        source = read_map(out / split / "text.en")[0]
        assert target.keys() == source.keys()
        assert all(by_english[source[key]] == target[key] for key in target)
        assert not seen & set(source.values())  # no English synopsis in two sets
        seen |= set(source.values())
