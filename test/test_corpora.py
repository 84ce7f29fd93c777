"""Data preparation of the corpus recipes (egs2/must_c, ami, slurp, xsum) on tiny
fixture corpora in the official layouts, through the recipes' own stages."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import corpus_fixtures
from espnet2_mtla.data.datadir import validate_data_dir
from espnet2_mtla.data.kaldi_files import read_map

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {"must_c": ("st1", "MUSTC"), "ami": ("asr1", "AMI"), "slurp": ("slu1", "SLURP"),
           "xsum": ("sum1", "XSUM")}


def recipe_copy(tmp_path, corpus):
    """A repository-shaped folder holding a copy of egs2/<corpus>/<task>."""
    repo = tmp_path / "repo"
    (repo / "egs2").mkdir(parents=True)
    for name in ("utils", "conf", "tools"):
        (repo / name).symlink_to(ROOT / name)
    (repo / "egs2" / "TEMPLATE").symlink_to(ROOT / "egs2" / "TEMPLATE")
    task = RECIPES[corpus][0]
    target = repo / "egs2" / corpus / task
    shutil.copytree(ROOT / "egs2" / corpus / task, target, symlinks=True)
    return target


def run_recipe(recipe, corpus, root, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), RECIPES[corpus][1]: str(root)}
    return subprocess.run(["bash", "run.sh", *args], cwd=recipe, env=env,
                          capture_output=True, text=True, timeout=600)


def maps(directory):
    return {name: read_map(directory / name, allow_empty_values=True)[0]
            for name in os.listdir(directory) if not name.startswith(".")
            and (directory / name).is_file()}


@pytest.mark.parametrize("corpus", sorted(RECIPES))
def test_missing_corpus_fails_early_saying_what_to_download(tmp_path, corpus):
    recipe = recipe_copy(tmp_path, corpus)
    done = run_recipe(recipe, corpus, tmp_path / "nowhere", "--stage", "1", "--stop_stage", "1")
    assert done.returncode != 0
    assert "not where db.sh says" in done.stderr and "Missing:" in done.stderr
    assert str(tmp_path / "nowhere") in done.stderr
    assert not (recipe / "data" / "train").exists()


def test_must_c_segments_transcripts_translations_through_audio_formatting(tmp_path):
    root = tmp_path / "MUSTC"
    corpus_fixtures.must_c(root)
    recipe = recipe_copy(tmp_path, "must_c")
    done = run_recipe(recipe, "must_c", root, "--stage", "1", "--stop_stage", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    train = maps(recipe / "data" / "train")
    assert train["segments"] == {"spk.1_0000050_0000170": "ted_1 0.50 1.70",
                                 "spk.1_0000200_0000300": "ted_1 2.00 3.00",
                                 "spk.2_0000025_0000175": "ted_2 0.25 1.75"}
    assert train["text"]["spk.1_0000200_0000300"] == "Wie geht es dir?"
    assert train["text.en"]["spk.2_0000025_0000175"] == "Good morning."
    assert train["utt2spk"]["spk.2_0000025_0000175"] == "spk.2"
    assert set(train["wav.scp"]) == {"ted_1", "ted_2"}
    assert validate_data_dir(recipe / "data" / "tst-COMMON", no_feats=True) == []
    # stage 3 cut the segments: one audio file per utterance of the segment's length
    samples = read_map(recipe / "dump" / "raw" / "train" / "utt2num_samples")[0]
    assert samples == {"spk.1_0000050_0000170": "19200", "spk.1_0000200_0000300": "16000",
                       "spk.2_0000025_0000175": "24000"}


def test_must_c_inconsistent_text_files_are_named(tmp_path):
    root = tmp_path / "MUSTC"
    corpus_fixtures.must_c(root)
    de = root / "en-de" / "data" / "dev" / "txt" / "dev.de"
    de.write_text(de.read_text() + "Extra.\n")
    recipe = recipe_copy(tmp_path, "must_c")
    done = run_recipe(recipe, "must_c", root, "--stage", "1", "--stop_stage", "1")
    assert done.returncode != 0 and "1 segments in dev.yaml" in done.stderr
    assert "2 in dev.de" in done.stderr


def test_ami_headset_segments_speakers_and_split(tmp_path):
    root = tmp_path / "AMI"
    corpus_fixtures.ami(root)
    recipe = recipe_copy(tmp_path, "ami")
    done = run_recipe(recipe, "ami", root, "--stage", "1", "--stop_stage", "3",
                      "--test_sets", "dev")
    assert done.returncode == 0, done.stderr[-3000:]
    train = maps(recipe / "data" / "train")
    assert train["text"] == {"AMI_ES2002a_H00_MEE006_0000040_0000100": "HMM",
                             "AMI_ES2002a_H01_FEE005_0000090_0000140": "OKAY",
                             "AMI_ES2002a_H01_FEE005_0000190_0000280": "RIGHT THEN"}
    assert train["wav.scp"]["AMI_ES2002a_H01"].endswith("ES2002a.Headset-1.wav")
    assert train["segments"]["AMI_ES2002a_H01_FEE005_0000190_0000280"] == \
        "AMI_ES2002a_H01 1.90 2.80"
    dev = maps(recipe / "data" / "dev")  # ES2011a is in the official dev list
    assert dev["text"] == {"AMI_ES2011a_H02_FEE041_0000010_0000100": "HELLO ALL"}
    assert maps(recipe / "data" / "eval")["utt2spk"] == {
        "AMI_EN2002a_H03_MEE071_0000020_0000060": "AMI_EN2002a_H03_MEE071"}
    assert (recipe / "dump" / "raw" / "org" / "dev" / "wav.scp").exists()


def test_slurp_intents_recordings_and_synthetic_training_audio(tmp_path):
    root = tmp_path / "SLURP"
    corpus_fixtures.slurp(root)
    recipe = recipe_copy(tmp_path, "slurp")
    done = run_recipe(recipe, "slurp", root, "--stage", "1", "--stop_stage", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    train = maps(recipe / "data" / "train")
    assert train["text"] == {"7-audio-1": "alarm_set wake me up at eight am",
                             "7-audio-1-headset": "alarm_set wake me up at eight am",
                             "9-synth-9": "iot_hue_lightoff turn the lights off"}
    assert "slurp_synth" in train["wav.scp"]["9-synth-9"]
    assert maps(recipe / "data" / "devel")["text"] == {"11-audio-2": "weather_query what is the weather"}


def test_xsum_documents_summaries_and_missing_articles(tmp_path):
    root = tmp_path / "XSUM"
    docs = corpus_fixtures.xsum(root)
    recipe = recipe_copy(tmp_path, "xsum")
    done = run_recipe(recipe, "xsum", root, "--stage", "1", "--stop_stage", "4")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 of 3 articles not downloaded, e.g. 999" in done.stderr
    train = maps(recipe / "data" / "train")
    assert train["text"] == {"100": "A cat was found.", "101": "Rain fell."}
    assert train["src_text"]["100"] == "The cat sat on a mat. It was happy."
    assert maps(recipe / "dump" / "raw" / "validation")["src_text"] == \
        {"102": " ".join(docs["102"][1])}
