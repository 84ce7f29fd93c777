"""The offline mini corpora: deterministic builds, unseen test sentences and voices, and
the four mini recipes end to end on tiny configurations (mini_en in CI, the rest slow)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from espnet2_mtla.bin.make_mini_corpus import main as make_mini_corpus
from espnet2_mtla.mini import corpus, debian_text, gettext_pairs
from espnet2_mtla.data.datadir import validate_data_dir
from espnet2_mtla.data.kaldi_files import read_map

ROOT = Path(__file__).resolve().parent.parent


def _have_translations():
    try:
        return bool(debian_text.translation_files())
    except FileNotFoundError:
        return False


needs_text = pytest.mark.skipif(not _have_translations(), reason=debian_text.FETCH_HINT)
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng missing: tools/install_mini_sources.sh")
TINY = ["--num_train", "12", "--num_dev", "3", "--num_test", "3", "--jobs", "2"]


def build(tmp_path, name, *args):
    out = tmp_path / name
    assert make_mini_corpus(["asr", "--out", str(out), *TINY, *args]) == 0
    return out


@needs_text
@needs_espeak
def test_asr_build_is_deterministic_and_tests_are_unseen(tmp_path):
    first, again = build(tmp_path, "a"), build(tmp_path, "b")
    other_seed = build(tmp_path, "c", "--seed", "2")
    assert corpus.text_digest(first) == corpus.text_digest(again)
    assert corpus.text_digest(first) != corpus.text_digest(other_seed)
    for split in ("train", "dev", "test"):
        assert (first / split / "text").read_bytes() == (again / split / "text").read_bytes()
        assert validate_data_dir(first / split, no_feats=True) == []
    train = read_map(first / "train" / "text")[0]
    test = read_map(first / "test" / "text")[0]
    assert not set(train.values()) & set(test.values())  # no shared sentence
    train_speakers = set(read_map(first / "train" / "utt2spk")[0].values())
    test_speakers = set(read_map(first / "test" / "utt2spk")[0].values())
    assert not train_speakers & test_speakers  # held-out voice variants
    # the audio is 16 kHz speech of a plausible length for its words
    import soundfile
    key, words = sorted(test.items())[0]
    info = soundfile.info(read_map(first / "test" / "wav.scp")[0][key])
    assert info.samplerate == 16000
    assert 0.15 * len(words.split()) < info.duration < 1.5 * len(words.split()) + 1


def test_more_voices_change_training_voices_only():
    from espnet2_mtla.mini.speech import NAMED_VARIANTS
    plain = corpus.voices_for("train", 400, seed=1)
    more = corpus.voices_for("train", 400, seed=1, more_voices=True)
    assert not {v.variant for v in plain} & set(NAMED_VARIANTS)
    assert {v.variant for v in more} & set(NAMED_VARIANTS)
    assert not {v.variant for v in more} & set(corpus.HELD_OUT_VARIANTS)
    for split in ("dev", "test"):  # the unseen voices stay as they were
        assert corpus.voices_for(split, 50, 1, more_voices=True) == corpus.voices_for(split, 50, 1)


@needs_text
@needs_espeak
def test_train_voices_per_item_speaks_each_training_sentence_again(tmp_path):
    once = build(tmp_path, "once")
    twice = build(tmp_path, "twice", "--train_voices_per_item", "2")
    texts = read_map(twice / "train" / "text")[0]
    assert len(texts) == 24
    assert sorted(texts.values()) == sorted(2 * list(read_map(once / "train" / "text")[0].values()))
    for split in ("dev", "test"):
        assert (once / split / "text").read_bytes() == (twice / split / "text").read_bytes()
    assert make_mini_corpus(["asr", "--out", str(tmp_path / "bad"), *TINY,
                             "--train_voices_per_item", "0"]) == 1


def test_sentence_filter_keeps_spoken_words_only():
    assert debian_text.normalise("Tools for the GNOME desktop, and more.") == \
        "tools for the gnome desktop and more"
    assert debian_text.normalise("It's built-in.") == "it's built in"
    for bad in ("Version 2.0 is here.", "See http://x.org", 'A "quoted" word', "e.g. this"):
        assert debian_text.normalise(bad) is None
    text = ("Package: a\nDescription-md5: 0\nDescription-en: Short synopsis\n first line\n"
            " second line.\n .\n next paragraph\n\nPackage: b\nDescription-en: B\n")
    found = debian_text.parse_descriptions(text)
    assert found[0].synopsis == "Short synopsis"
    assert found[0].paragraphs == ("first line second line.", "next paragraph")
    assert found[1].paragraphs == ()


def test_mo_reader_reads_both_byte_orders(tmp_path):
    import struct

    def mo(order, pairs):
        ids = b"".join(k.encode() + b"\0" for k, _ in pairs)
        strs = b"".join(v.encode() + b"\0" for _, v in pairs)
        start = 28 + 16 * len(pairs)
        table, offset = b"", start
        for key, _ in pairs:
            table += struct.pack(order + "2I", len(key.encode()), offset)
            offset += len(key.encode()) + 1
        table2 = b""
        for _, value in pairs:
            table2 += struct.pack(order + "2I", len(value.encode()), offset)
            offset += len(value.encode()) + 1
        header = struct.pack(order + "7I", 0x950412DE, 0, len(pairs), 28,
                             28 + 8 * len(pairs), 0, 0)
        return header + table + table2 + ids + strs

    pairs = [("Open the file now.", "Öffnen Sie die Datei jetzt."), ("%s files", "%s Dateien")]
    for order in "<>":
        path = tmp_path / f"x{order == '<'}.mo"
        path.write_bytes(mo(order, pairs))
        assert gettext_pairs.read_mo(path) == pairs
        assert gettext_pairs.sentence_pairs([path], 3, 12) == dict(pairs[:1])
    (tmp_path / "bad.mo").write_bytes(b"not a catalog at all....")
    with pytest.raises(ValueError, match="bad.mo"):
        gettext_pairs.read_mo(tmp_path / "bad.mo")


def test_unpacked_catalogs_travel_without_their_packages(tmp_path, monkeypatch):
    """A download folder whose root/ holds the requested packages unpacked (its .unpacked
    marker) is used as it is: no .deb files, no apt-get (a GPU machine with no network);
    a larger set serves a smaller one with only its packages' catalogs, in file-name
    order; a root without all of them is completed by apt-get."""
    import subprocess

    root = tmp_path / "root"
    for package, name in (("apt", "b.mo"), ("dpkg", "a.mo"), ("inkscape", "0.mo")):
        locale = root / package / gettext_pairs.LOCALE_DIR
        locale.mkdir(parents=True)
        (locale / name).write_bytes(b"")
    calls = []

    def no_network(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 100, "", "E: no network")

    monkeypatch.setattr(gettext_pairs.subprocess, "run", no_network)
    marker = root / ".unpacked"
    marker.write_text("\n".join(gettext_pairs.MORE_CATALOG_PACKAGES) + "\n")
    locale_of = lambda package: root / package / gettext_pairs.LOCALE_DIR  # noqa: E731
    assert gettext_pairs.fetch_catalogs(tmp_path) == [locale_of("dpkg") / "a.mo",
                                                     locale_of("apt") / "b.mo"]
    assert gettext_pairs.fetch_catalogs(tmp_path, gettext_pairs.MORE_CATALOG_PACKAGES) == [
        locale_of("inkscape") / "0.mo", locale_of("dpkg") / "a.mo", locale_of("apt") / "b.mo"]
    assert calls == []
    marker.write_text("\n".join(gettext_pairs.CATALOG_PACKAGES) + "\n")
    with pytest.raises(RuntimeError, match="apt-get download failed"):
        gettext_pairs.fetch_catalogs(tmp_path, gettext_pairs.CATALOG_SETS["more"])
    assert calls and calls[0][:2] == ["apt-get", "download"]
    assert "inkscape" in calls[0] and "apt" not in calls[0]


MINI = {"mini_en/asr1": ("asr", "wer"), "mini_en_de/st1": ("st", "bleu"),
        "mini_slu/slu1": ("slu", "intent"), "mini_sum/sum1": ("summ", "rouge")}


def mini_recipe(tmp_path, name):
    repo = tmp_path / "repo"
    (repo / "egs2").mkdir(parents=True)
    for link in ("utils", "conf", "tools"):
        (repo / link).symlink_to(ROOT / link)
    (repo / "egs2" / "TEMPLATE").symlink_to(ROOT / "egs2" / "TEMPLATE")
    (repo / "egs2" / "mini_en").mkdir()  # the shared attention fragments live in mini_en
    shutil.copytree(ROOT / "egs2" / "mini_en" / "asr1" / "conf",
                    repo / "egs2" / "mini_en" / "asr1" / "conf")
    target = repo / "egs2" / name
    shutil.copytree(ROOT / "egs2" / name, target, symlinks=True, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("data", "dump", "exp", "downloads",
                                                  "RESULTS.*"))
    return target


@pytest.mark.parametrize("name", [
    "mini_en/asr1",
    pytest.param("mini_en_de/st1", marks=pytest.mark.slow),
    pytest.param("mini_slu/slu1", marks=pytest.mark.slow),
    pytest.param("mini_sum/sum1", marks=pytest.mark.slow),
])
@needs_text
@needs_espeak
def test_mini_recipe_runs_to_its_scores(tmp_path, name):
    """The recipe's own run.sh, with a tiny data set, one epoch and two variants."""
    recipe = mini_recipe(tmp_path, name)
    task, metric = MINI[name]
    config = yaml.safe_load((recipe / "conf" / "train.yaml").read_text())
    config.update(max_epoch=1, num_workers=0)
    (recipe / "conf" / "smoke.yaml").write_text(yaml.safe_dump(config))
    sizes = "--num_train 40 --num_dev 6 --num_test 6"
    if task == "summ":
        sizes += " --min_words 20 --max_words 80"
    nbpe = "150" if task == "summ" else "60"  # summaries bring more characters
    args = ["--local_data_opts", sizes, "--train_config", "conf/smoke.yaml",
            "--attn_confs", "mha mtla_s2", "--nbpe", nbpe]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["bash", "run.sh", *args], cwd=recipe, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    for variant in ("mha", "mtla_s2"):
        decode = recipe / "exp" / f"mtla_{variant}" / "decode_test"
        assert len((decode / "1best_recog" / "text").read_text().splitlines()) == 6
        assert (decode / f"score_{metric}" / "result.txt").exists()
    assert "mtla_mtla_s2" in (recipe / "RESULTS.md").read_text()
