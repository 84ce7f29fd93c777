"""Scoring per task: WER/CER, BLEU, intent accuracy (+ transcript WER), ROUGE."""

import pytest

from espnet2_mtla.bin.score import main, score


def test_wer_and_cer_by_hand():
    refs = {"a": "the cat sat", "b": "on the mat"}
    hyps = {"a": "the cat sat", "b": "on a mat mat"}  # 1 substitution + 1 insertion of 6
    results = score("asr", refs, hyps)
    assert results["wer"]["WER"] == pytest.approx(100 * 2 / 6)
    assert results["wer"]["substitutions"] == 1 and results["wer"]["insertions"] == 1
    assert 0 < results["cer"]["CER"] < results["wer"]["WER"]


def test_missing_hypothesis_counts_as_empty_and_extra_is_an_error():
    results = score("asr", {"a": "x y", "b": "z"}, {"a": "x y"})
    assert results["wer"]["WER"] == pytest.approx(100 / 3)
    with pytest.raises(ValueError, match="no reference"):
        score("asr", {"a": "x"}, {"a": "x", "q": "y"})


def test_bleu_perfect_and_imperfect():
    refs = {"a": "das ist ein kleiner test", "b": "noch ein satz hier"}
    assert score("st", refs, refs)["bleu"]["BLEU"] == pytest.approx(100.0)
    worse = score("st", refs, {"a": "das ist ein test", "b": "ein satz"})["bleu"]["BLEU"]
    assert 0 <= worse < 60


def test_slu_intent_accuracy_and_transcript_wer():
    refs = {"a": "<play_music> play some jazz", "b": "<weather> is it raining"}
    hyps = {"a": "<play_music> play some jazz", "b": "<alarm> is it raining today"}
    results = score("slu", refs, hyps)
    assert results["intent"]["accuracy"] == 50.0
    assert results["wer"]["WER"] == pytest.approx(100 / 6)


def test_rouge():
    refs = {"a": "the storm closed the coastal roads"}
    results = score("summ", refs, refs)["rouge"]
    assert results["ROUGE-1"] == pytest.approx(100) and results["ROUGE-L"] == pytest.approx(100)
    partial = score("summ", refs, {"a": "a storm closed roads"})["rouge"]
    assert 0 < partial["ROUGE-2"] < partial["ROUGE-1"] < 100


def test_cli_writes_result_files(tmp_path):
    (tmp_path / "ref").write_text("u1 hello world\r\nu2 good morning\n")
    (tmp_path / "hyp").write_text("u2 good morning\nu1 hello word\n")
    assert main(["--task", "asr", "--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"),
                 "--out_dir", str(tmp_path / "decode")]) == 0
    assert (tmp_path / "decode/score_wer/result.txt").read_text().startswith("WER 25.00")
    assert (tmp_path / "decode/score_cer/result.txt").exists()
    assert main(["--task", "asr", "--ref", str(tmp_path / "ref"), "--hyp",
                 str(tmp_path / "missing"), "--out_dir", str(tmp_path / "x")]) == 1


def test_empty_reference_counts_the_hypothesis_as_insertions():
    """An utterance with an empty reference is not dropped: its words are errors."""
    results = score("asr", {"a": "the cat", "b": ""}, {"a": "the cat", "b": "a dog barks"})
    assert results["wer"]["insertions"] == 3 and results["wer"]["empty_references"] == 1
    assert results["wer"]["WER"] == pytest.approx(100 * 3 / 2)
    assert results["cer"]["insertions"] == len("a dog barks")
    assert score("asr", {"a": "the cat", "b": ""}, {"a": "the cat", "b": ""})["wer"]["WER"] == 0


@pytest.mark.parametrize("which", ["ref", "hyp"])
def test_duplicate_keys_in_either_file_are_an_error(tmp_path, capsys, which):
    files = {"ref": "a the cat\nb on the mat\n", "hyp": "a the cat\nb on the mat\n"}
    files[which] += "a another line\n"
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    assert main(["--task", "asr", "--ref", str(tmp_path / "ref"), "--hyp",
                 str(tmp_path / "hyp"), "--out_dir", str(tmp_path / "out")]) == 1
    assert "duplicate key a" in capsys.readouterr().err
    assert not (tmp_path / "out" / "score_wer").exists()
