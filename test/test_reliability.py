"""Nothing silently wrong, nothing lost (CPU, tiny models): strict model files, configs an
experiment keeps, damaged checkpoints named, bad audio skipped or named at decoding,
decodes of different runs never merged."""

import json
import logging
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
import yaml

from test_task_cli import CONFIG, common_args, train_cli, workdir  # noqa: F401 (fixture)


def decode_args(workdir, model_dir, model_file, output, *options, wav_scp=None):
    return ["--train_config", str(model_dir / "config.yaml"),
            "--model_file", str(model_dir / model_file),
            "--data_path_and_name_and_type",
            f"{wav_scp or workdir / 'data/train/wav.scp'},speech,sound",
            "--output_dir", str(output), "--beam_size", "2", "--maxlenratio", "-3", *options]


def decode(*args):
    from espnet2_mtla.bin.inference import main

    main(args)


@pytest.fixture(scope="module")
def trained(workdir):  # noqa: F811
    """One epoch of the MTLA config and one of MHA, each in its own experiment."""
    mtla, mha = workdir / "exp_rel_mtla", workdir / "exp_rel_mha"
    train_cli([*common_args(workdir), "--output_dir", mtla])
    config = workdir / "conf_mha.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "attention": "mha", "attention_conf": {}}))
    train_cli([*common_args(workdir, config=config), "--output_dir", mha])
    return mtla, mha


def test_trainer_checkpoint_as_model_file_decodes_its_model_part(workdir, trained, caplog,
                                                                 tmp_path):
    mtla, _ = trained
    decode(*decode_args(workdir, mtla, "1epoch.pth", tmp_path / "a"))
    with caplog.at_level(logging.WARNING):
        decode(*decode_args(workdir, mtla, "checkpoint.pth", tmp_path / "b"))
    assert "trainer checkpoint" in caplog.text and "model part" in caplog.text
    assert ((tmp_path / "a/1best_recog/text").read_text()
            == (tmp_path / "b/1best_recog/text").read_text())


def test_model_file_of_another_attention_type_is_refused(workdir, trained, tmp_path):
    mtla, mha = trained
    with pytest.raises(SystemExit) as error:
        decode(*decode_args(workdir, mtla, "../exp_rel_mha/1epoch.pth", tmp_path / "x"))
    message = str(error.value)
    assert "exp_rel_mha/1epoch.pth does not fit the model built from" in message
    assert "missing from the file" in message and "unexpected keys" in message
    assert "hypernet_down" in message and "q_proj" in message  # the first keys named
    assert not (tmp_path / "x" / "1best_recog").exists()


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_damaged_model_file_is_an_error_naming_it(workdir, trained, tmp_path, damage):
    mtla, _ = trained
    bad = tmp_path / "bad.pth"
    data = (mtla / "1epoch.pth").read_bytes()
    bad.write_bytes(os.urandom(4096) if damage == "random" else data[: len(data) // 2])
    args = decode_args(workdir, mtla, "1epoch.pth", tmp_path / "x")
    args[args.index("--model_file") + 1] = str(bad)
    with pytest.raises(SystemExit) as error:
        decode(*args)
    assert f"{bad}: not a readable PyTorch checkpoint" in str(error.value)


def test_resume_from_a_truncated_checkpoint_names_it(workdir, tmp_path):
    out = tmp_path / "exp"
    train_cli([*common_args(workdir), "--output_dir", out])
    data = (out / "checkpoint.pth").read_bytes()
    (out / "checkpoint.pth").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=f"{out}/checkpoint.pth: not a readable PyTorch"):
        train_cli([*common_args(workdir), "--output_dir", out, "--max_epoch", 2,
                   "--resume", "true"])


def test_an_experiment_keeps_its_model_config(workdir, tmp_path):
    """A changed layer count over existing weights is refused (config.yaml untouched);
    a training-only change goes ahead and the previous config is kept."""
    out = tmp_path / "exp"
    train_cli([*common_args(workdir), "--output_dir", out])
    before = (out / "config.yaml").read_text()
    deeper = tmp_path / "deeper.yaml"
    deeper.write_text(yaml.safe_dump(
        {**CONFIG, "decoder_conf": {**CONFIG["decoder_conf"], "num_layers": 3}}))
    with pytest.raises(ValueError, match="holds weights .* changes decoder_conf.*new directory"):
        train_cli([*common_args(workdir, config=deeper), "--output_dir", out,
                   "--resume", "true", "--max_epoch", 2])
    assert (out / "config.yaml").read_text() == before
    train_cli([*common_args(workdir), "--output_dir", out, "--resume", "true",
               "--max_epoch", 2])
    assert (out / "2epoch.pth").exists()
    assert yaml.safe_load((out / "config.yaml.1").read_text())["max_epoch"] == 1
    assert yaml.safe_load((out / "config.yaml").read_text())["max_epoch"] == 2


def test_bad_audio_at_decoding_is_named_or_skipped(workdir, trained, tmp_path):
    import soundfile

    mtla, _ = trained
    wav_scp = tmp_path / "wav.scp"
    lines = (workdir / "data/train/wav.scp").read_text().splitlines()
    audio, rate = soundfile.read(lines[3].split()[1])
    soundfile.write(str(tmp_path / "utt4_8k.flac"), audio[::2], rate // 2)
    lines[1] = "utt2 /no/such/utt2.flac"
    lines[3] = f"utt4 {tmp_path / 'utt4_8k.flac'}"
    wav_scp.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as error:
        decode(*decode_args(workdir, mtla, "1epoch.pth", tmp_path / "e", wav_scp=wav_scp))
    assert "utterance utt2" in str(error.value) and "/no/such/utt2.flac" in str(error.value)
    assert "utterance utt4" in str(error.value) and "8000 Hz" in str(error.value)
    assert not (tmp_path / "e" / "1best_recog").exists()  # nothing half-written
    decode(*decode_args(workdir, mtla, "1epoch.pth", tmp_path / "s", "--on_bad_audio", "skip",
                        wav_scp=wav_scp))
    decoded = [line.split()[0] for line in
               (tmp_path / "s/1best_recog/text").read_text().splitlines()]
    assert decoded == ["utt1", "utt3", "utt5"]
    skipped = (tmp_path / "s/skipped").read_text()
    assert skipped.startswith("utt2 ") and "\nutt4 " in skipped and "8000 Hz" in skipped
    assert json.loads((tmp_path / "s/efficiency.json").read_text())["skipped_utterances"] == 2


def split_decode(workdir, model_dir, model_file, logdir, *options):
    """Two jobs as mtla.sh stage 8 runs them (keys.N, output.N, --skip_done true)."""
    keys = sorted(line.split()[0] for line in
                  (workdir / "data/train/text").read_text().splitlines())
    for job, part in ((1, keys[:3]), (2, keys[3:])):
        (logdir / f"keys.{job}").parent.mkdir(parents=True, exist_ok=True)
        (logdir / f"keys.{job}").write_text("".join(f"{k}\n" for k in part))
        decode(*decode_args(workdir, model_dir, model_file, logdir / f"output.{job}",
                            "--key_file", str(logdir / f"keys.{job}"), "--skip_done", "true",
                            *options))
    return [logdir / "output.1", logdir / "output.2"]


def test_decodes_of_different_runs_are_never_merged(workdir, trained, tmp_path, capsys):
    from espnet2_mtla.bin.merge_decodes import main as merge

    mtla, _ = trained
    parts = split_decode(workdir, mtla, "1epoch.pth", tmp_path / "logdir")
    assert merge(["--out", str(tmp_path / "merged"), *map(str, parts)]) == 0
    assert len((tmp_path / "merged/1best_recog/text").read_text().splitlines()) == 5
    # an older run's output.2 (another model file) beside this run's output.1
    (mtla / "other.pth").write_bytes((mtla / "checkpoint.pth").read_bytes())
    other = tmp_path / "other"
    split_decode(workdir, mtla, "other.pth", other)
    shutil.rmtree(parts[1])
    shutil.copytree(other / "output.2", parts[1])
    assert merge(["--out", str(tmp_path / "merged"), *map(str, parts)]) == 1
    err = capsys.readouterr().err
    assert "come from different runs" in err and "model_file" in err
    # a job killed before it finished: no report, no merge
    (parts[0] / "efficiency.json").unlink()
    assert merge(["--out", str(tmp_path / "merged"), *map(str, parts)]) == 1
    assert "did not finish" in capsys.readouterr().err


def test_a_part_missing_keys_of_its_split_is_not_merged(workdir, trained, tmp_path, capsys):
    from espnet2_mtla.bin.merge_decodes import main as merge

    mtla, _ = trained
    parts = split_decode(workdir, mtla, "1epoch.pth", tmp_path / "logdir")
    text = parts[0] / "1best_recog" / "text"
    text.write_text("".join(text.read_text().splitlines(keepends=True)[:-1]))
    assert merge(["--out", str(tmp_path / "merged"), *map(str, parts)]) == 1
    assert "1 keys of" in capsys.readouterr().err


def test_finished_jobs_of_the_same_run_are_kept_others_redone(workdir, trained, tmp_path,
                                                              caplog):
    mtla, _ = trained
    logdir = tmp_path / "logdir"
    parts = split_decode(workdir, mtla, "1epoch.pth", logdir)
    stamp = (parts[0] / "efficiency.json").stat().st_mtime_ns
    (parts[1] / "efficiency.json").unlink()  # job 2 was killed
    with caplog.at_level(logging.INFO):
        split_decode(workdir, mtla, "1epoch.pth", logdir)
    assert (parts[0] / "efficiency.json").stat().st_mtime_ns == stamp  # kept
    assert (parts[1] / "efficiency.json").exists()  # re-run
    assert "finished by the same run already" in caplog.text
    # other options: decoded again
    split_decode(workdir, mtla, "1epoch.pth", logdir, "--beam_size", "3")
    assert (parts[0] / "efficiency.json").stat().st_mtime_ns != stamp
    assert json.loads((parts[0] / "efficiency.json").read_text())["run"]["beam_size"] == 3


def test_packing_refuses_weights_that_do_not_fit_and_packs_a_checkpoints_model(trained,
                                                                                tmp_path):
    from espnet2_mtla.bin.pack_model import main as pack

    mtla, mha = trained
    (mtla / "wrong.pth").write_bytes((mha / "1epoch.pth").read_bytes())
    assert pack(["--exp_dir", str(mtla), "--model_file", "wrong.pth",
                 "--out", str(tmp_path / "w.tar.gz")]) == 1
    assert not (tmp_path / "w.tar.gz").exists()
    assert pack(["--exp_dir", str(mtla), "--model_file", "checkpoint.pth",
                 "--out", str(tmp_path / "c.tar.gz")]) == 0
    with tarfile.open(tmp_path / "c.tar.gz") as archive:
        archive.extractall(tmp_path / "c")
    state = torch.load(tmp_path / "c" / "model.pth")
    assert "optimizers" not in state and any(k.startswith("decoder.") for k in state)
    # a file the config names travels in files/; espnet's unpack makes its path absolute
    from espnet2.main_funcs.pack_funcs import unpack

    exp = tmp_path / "exp_with_file"
    exp.mkdir()
    config = yaml.safe_load((mtla / "config.yaml").read_text())
    (tmp_path / "bpe.model").write_bytes(b"not read by the model")
    config["bpemodel"] = str(tmp_path / "bpe.model")
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    (exp / "1epoch.pth").write_bytes((mtla / "1epoch.pth").read_bytes())
    assert pack(["--exp_dir", str(exp), "--model_file", "1epoch.pth",
                 "--out", str(tmp_path / "f.tar.gz")]) == 0
    found = unpack(tmp_path / "f.tar.gz", tmp_path / "f")
    unpacked = yaml.safe_load(Path(found["train_config"]).read_text())
    assert unpacked["bpemodel"] == str(tmp_path / "f" / "files" / "bpe.model")
    assert Path(unpacked["bpemodel"]).read_bytes() == b"not read by the model"


def test_checks_before_training_leave_logging_to_espnet(tmp_path):
    """The checks DecoderOnlyTask.main runs before espnet sets up logging must not set up
    the root logger themselves (a module-level logging.info does, at WARNING: espnet's
    own basicConfig is then ignored and exp/*/train.log loses every INFO line, its epoch
    results too): a resumed experiment whose options changed, and a long audio check."""
    import subprocess
    import sys

    import soundfile

    out = tmp_path / "exp"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump({"max_epoch": 1}))
    (out / "1epoch.pth").write_bytes(b"")
    wav = tmp_path / "a.wav"
    soundfile.write(wav, [0.0] * 1600, 16000)
    (tmp_path / "wav.scp").write_text(f"a {wav}\nb {wav}\n")
    script = f"""
import argparse, logging
from espnet2_mtla.data import audio_check
from espnet2_mtla.tasks.launch_checks import keep_experiment_config
keep_experiment_config(argparse.Namespace(output_dir={str(out)!r}, max_epoch=2))
audio_check.PROGRESS_EVERY = 1
assert audio_check.sound_list_problems({str(tmp_path / 'wav.scp')!r}, 16000) == {{}}
print('root handlers', len(logging.getLogger().handlers))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=str(Path(__file__).resolve().parents[1]), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "root handlers 0" in done.stdout
    assert (out / "config.yaml.1").exists()  # the check did run
    assert "previous config kept as config.yaml.1" in done.stderr
