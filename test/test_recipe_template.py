"""The stage template end to end on a tiny generated data set (CPU, a couple of minutes):
--task asr with two attention variants in a sweep, then a re-run of finished stages."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from espnet2_mtla.data.kaldi_files import read_map
from test_task_cli import CONFIG

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent

DATA_SH = f"""#!/usr/bin/env bash
# Generated data: distinct tone chords with fixed transcripts (test/speech_fixtures.py).
set -euo pipefail
python - <<'PY'
import sys
sys.path.insert(0, "{HERE}")
from pathlib import Path
import speech_fixtures as f
keys = sorted(f.TRANSCRIPTS)
f.write_data_dir(Path("data/train"), keys)
f.write_data_dir(Path("data/dev"), keys[:3])
f.write_data_dir(Path("data/test"), keys[1:])
PY
"""


def make_recipe(repo, run_options):
    """A repository-shaped folder under ``repo``: egs2/mini/asr1 next to the real utils/,
    conf/, tools/, whose run.sh calls mtla.sh on generated data with ``run_options``."""
    for name in ("utils", "conf", "tools"):
        (repo / name).symlink_to(ROOT / name)
    (repo / "egs2").mkdir()
    (repo / "egs2" / "TEMPLATE").symlink_to(ROOT / "egs2" / "TEMPLATE")
    recipe = repo / "egs2" / "mini" / "asr1"
    (recipe / "local").mkdir(parents=True)
    (recipe / "conf").mkdir()
    for name in ("mtla.sh", "path.sh", "cmd.sh", "db.sh"):
        (recipe / name).symlink_to(f"../../TEMPLATE/mtla1/{name}")
    (recipe / "utils").symlink_to("../../../utils")
    (recipe / "local" / "data.sh").write_text(DATA_SH)
    (recipe / "local" / "data.sh").chmod(0o755)
    config = {k: v for k, v in CONFIG.items() if not k.startswith("attention")}
    config.update(max_epoch=2, use_tensorboard=False)
    (recipe / "conf" / "train.yaml").write_text(yaml.safe_dump(config))
    (recipe / "conf" / "decode.yaml").write_text("beam_size: 3\nmaxlenratio: -5\n")
    (recipe / "run.sh").write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        "./mtla.sh --task asr --train_set train --valid_set dev --test_sets test "
        f"--train_config conf/train.yaml {run_options} \"$@\"\n")
    (recipe / "run.sh").chmod(0o755)
    return recipe


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    return make_recipe(tmp_path_factory.mktemp("repo"),
                       "--attn_confs 'mha mtla_s2' --train_jobs 2 --cpu_threads 2 --inference_nj 2 "
                       "--speed_perturb_factors '0.9 1.0 1.1' "
                       "--inference_config conf/decode.yaml --inference_args '--beam_size 2'")


def run(recipe, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(["bash", "run.sh", *args], cwd=recipe, env=env,
                          capture_output=True, text=True, timeout=1500)


def test_template_runs_end_to_end_with_a_sweep(recipe):
    done = run(recipe)
    assert done.returncode == 0, done.stderr[-4000:]
    for variant in ("mha", "mtla_s2"):
        decode = recipe / "exp" / f"mtla_{variant}" / "decode_test"
        lines = (decode / "1best_recog" / "text").read_text().splitlines()
        assert [line.split()[0] for line in lines] == ["utt2", "utt3", "utt4", "utt5"]
        assert (decode / "score_wer" / "result.txt").read_text().startswith("WER ")
        assert (decode / "score_cer" / "result.txt").exists()
        assert (decode / "logdir" / "decode.2.log").exists()  # split over 2 jobs
        # the decode config's options, --inference_args winning over it
        report = json.loads((decode / "efficiency.json").read_text())
        assert report["beam_size"] == 2 and report["run"]["maxlenratio"] == -5
    results = (recipe / "RESULTS.md").read_text()
    assert "mtla_mha" in results and "mtla_mtla_s2" in results and "kv_cache_MB" in results
    # stages 7 and 8 show progress on the console; the two variants trained at once, each
    # line saying whose it is
    assert "1epoch results" in done.stderr and "2epoch results" in done.stderr
    assert "[mtla_mha] " in done.stderr and "[mtla_mtla_s2] " in done.stderr
    assert "1 CPU thread(s) each" in done.stderr
    assert "decoded 2/2 utterances" in done.stderr
    assert (recipe / "RESULTS.png").exists()
    # the sweep's cache sizes follow the formulas: per token and layer MHA 2 * d_model = 64
    # numbers here (d_model 32), MTLA s=2 (r + d_r) / 2 = 144 (the paper's latent sizes)
    rows = {line.split("|")[1].strip(): line.split("|") for line in results.splitlines()
            if line.startswith("| mtla_")}
    header = [cell.strip() for cell in results.splitlines()[2].split("|")]
    cache = header.index("kv_cache_MB")
    ratio = float(rows["mtla_mtla_s2"][cache]) / float(rows["mtla_mha"][cache])
    assert 1.8 < ratio < 2.6, ratio
    # the training cost beside the quality (2 epochs, the same steps in each)
    epochs, steps = header.index("epochs"), header.index("train_steps")
    assert rows["mtla_mha"][epochs].strip().startswith("2 (best ")
    assert int(rows["mtla_mha"][steps]) > 0 and int(rows["mtla_mha"][steps]) % 2 == 0
    assert float(rows["mtla_mha"][header.index("train_min")]) >= 0
    # the cost to converge: steps up to the best epoch (each epoch has the same steps)
    best = int(rows["mtla_mha"][epochs].split("best ")[1].rstrip(") "))
    best_steps = int(rows["mtla_mha"][header.index("best_steps")])
    assert best_steps == int(rows["mtla_mha"][steps]) * best // 2
    assert 0 <= float(rows["mtla_mha"][header.index("best_min")]) <= float(rows["mtla_mha"][header.index("train_min")])
    # stage 2 tripled the training set with speed-perturbed copies
    train_keys = read_map(recipe / "dump" / "raw" / "train_sp" / "text")[0]
    assert len(train_keys) == 15 and "sp0.9-utt1" in train_keys and "utt1" in train_keys


def test_packed_model_decodes_alone_like_the_experiment(recipe, tmp_path):
    import tarfile

    from espnet2.main_funcs.pack_funcs import unpack

    archive = recipe / "exp" / "packed" / "mtla_mtla_s2.tar.gz"
    unpacked = tmp_path / "mtla_mtla_s2"
    with tarfile.open(archive) as packed:  # as its README says: into a folder of its name
        packed.extractall(unpacked)
    assert {"config.yaml", "model.pth", "tokens.txt", "README.md", "meta.yaml",
            "packed.yaml"} <= {p.name for p in unpacked.iterdir()}
    assert "python -m espnet2_mtla.bin.inference" in (unpacked / "README.md").read_text()
    # espnet's unpack reads it too: the two files its meta.yaml names
    found = unpack(archive, tmp_path / "espnet_unpacked")
    assert found == {"train_config": str(tmp_path / "espnet_unpacked" / "config.yaml"),
                     "model_file": str(tmp_path / "espnet_unpacked" / "model.pth")}
    wav_scp = recipe / "dump" / "raw" / "test" / "wav.scp"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "espnet2_mtla.bin.inference", "--train_config", "config.yaml",
         "--model_file", "model.pth", "--data_path_and_name_and_type",
         f"{wav_scp},speech,sound", "--output_dir", "decode", "--beam_size", "2",
         "--maxlenratio", "-5"], cwd=unpacked, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = (recipe / "exp" / "mtla_mtla_s2" / "decode_test" / "1best_recog" / "text")
    assert (unpacked / "decode" / "1best_recog" / "text").read_text() == expected.read_text()


def test_rerunning_finished_stages_is_harmless(recipe):
    before = (recipe / "RESULTS.md").read_text()
    again = run(recipe, "--stage", "3", "--stop_stage", "5")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "done already" in again.stderr
    again = run(recipe, "--stage", "9", "--stop_stage", "10")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (recipe / "RESULTS.md").read_text().splitlines()[:2] == before.splitlines()[:2]


def test_stored_ssl_features_through_the_stages(recipe):
    """--feats_type ssl: a local random HuBERT run once (stage 4), then statistics,
    training and decoding read the ark features (no frontend in the model)."""
    from espnet2_mtla.bin.make_ssl_checkpoint import main as make_checkpoint

    assert make_checkpoint(["--model", "hubert", "--out", str(recipe / "hubert.pt")]) == 0
    fragment = yaml.safe_load((ROOT / "conf" / "frontend" / "hubert.yaml").read_text())
    fragment["frontend_conf"]["frontend_conf"]["path_or_url"] = str(recipe / "hubert.pt")
    (recipe / "conf" / "hubert.yaml").write_text(yaml.safe_dump(fragment))
    done = run(recipe, "--stage", "4", "--stop_stage", "9", "--feats_type", "ssl",
               "--ssl_conf", "conf/hubert.yaml", "--attn_confs", "mtla_s2",
               "--expdir", "exp_ssl")
    assert done.returncode == 0, done.stderr[-4000:]
    assert (recipe / "dump" / "ssl" / "test" / "feats.scp").exists()
    config = yaml.safe_load((recipe / "exp_ssl" / "mtla_mtla_s2" / "config.yaml").read_text())
    assert config["frontend"] is None and config["input_size"] == 64
    decode = recipe / "exp_ssl" / "mtla_mtla_s2" / "decode_test"
    assert len((decode / "1best_recog" / "text").read_text().splitlines()) == 4
    assert (decode / "score_wer" / "result.txt").exists()


def test_fbank_zip_archives_through_the_stages(recipe):
    """--feats_type fbank_zip: fbank80.zip + gcmvn.npz (stage 4), then training and
    decoding read the archive (zip_npy) with global CMVN."""
    done = run(recipe, "--stage", "4", "--stop_stage", "9", "--feats_type", "fbank_zip",
               "--attn_confs", "mha", "--expdir", "exp_zip")
    assert done.returncode == 0, done.stderr[-4000:]
    assert (recipe / "dump" / "fbank_zip" / "train_sp" / "gcmvn.npz").exists()
    config = yaml.safe_load((recipe / "exp_zip" / "mtla_mha" / "config.yaml").read_text())
    assert config["input_size"] == 80 and config["normalize"] == "global_mvn"
    assert config["normalize_conf"]["stats_file"].endswith("train_sp/gcmvn.npz")
    decode = recipe / "exp_zip" / "mtla_mha" / "decode_test"
    assert len((decode / "1best_recog" / "text").read_text().splitlines()) == 4


def test_bad_option_is_a_clear_error(recipe):
    bad = run(recipe, "--stage", "1", "--stop_stage", "1", "--nbest", "3")
    assert bad.returncode != 0 and "unknown option --nbest" in bad.stderr


def test_changed_transcripts_remake_the_formatted_data(recipe):
    """Stage 3 knows what it was made from: an edited data/<set>/text is made again."""
    text = recipe / "data" / "test" / "text"
    original = text.read_text()
    lines = original.splitlines()
    lines[0] = lines[0].split()[0] + " an edited transcript"
    text.write_text("\n".join(lines) + "\n")
    try:
        done = run(recipe, "--stage", "3", "--stop_stage", "4")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "changed since dump/raw/org/test was made: remaking it" in done.stderr
        assert "an edited transcript" in (recipe / "dump/raw/test/text").read_text()
        assert "dump/raw/org/train_sp done already" in done.stderr  # unchanged sets kept
    finally:
        text.write_text(original)
        assert run(recipe, "--stage", "3", "--stop_stage", "4").returncode == 0


def test_a_changed_model_config_is_refused_for_a_trained_experiment(recipe):
    exp = recipe / "exp" / "mtla_mha"
    config = yaml.safe_load((recipe / "conf" / "train.yaml").read_text())
    config["decoder_conf"]["num_layers"] += 1
    (recipe / "conf" / "deeper.yaml").write_text(yaml.safe_dump(config))
    before = (exp / "train.yaml").read_text(), (exp / "config.yaml").read_text()
    done = run(recipe, "--stage", "7", "--stop_stage", "7", "--attn_confs", "mha",
               "--train_config", "conf/deeper.yaml")
    assert done.returncode != 0
    assert "which exp/mtla_mha's weights were trained with" in done.stderr
    assert "num_layers" in done.stderr and "--tag" in done.stderr
    assert ((exp / "train.yaml").read_text(), (exp / "config.yaml").read_text()) == before


def test_attn_confs_are_checked_before_any_training(recipe):
    exp = recipe / "exp" / "mtla_mha"
    logs = sorted(p.name for p in exp.glob("train.log*"))
    done = run(recipe, "--stage", "7", "--stop_stage", "7", "--attn_confs", "mha mtla_s9")
    assert done.returncode != 0 and "--attn_confs mtla_s9: no attention fragment" in done.stderr
    assert "mtla_s2" in done.stderr  # the fragments there are listed
    assert sorted(p.name for p in exp.glob("train.log*")) == logs  # mha did not train


def test_a_resumed_training_keeps_the_earlier_log(recipe):
    exp = recipe / "exp" / "mtla_mha"
    first = (exp / "train.log").read_text()
    done = run(recipe, "--stage", "7", "--stop_stage", "7", "--attn_confs", "mha")
    assert done.returncode == 0, done.stderr[-3000:]
    rotated = sorted(exp.glob("train.log.*"))
    assert rotated and rotated[-1].read_text() == first and "1epoch results" in first
    assert (exp / "train.log").exists()
    assert not (exp / "config.yaml.1").exists()  # the same config: no history entry


def test_train_args_continue_a_trained_model(recipe):
    """--train_args win over the config, as asr.sh's --asr_args: a trained model goes on
    from its last checkpoint to a larger --max_epoch (the earlier config kept as history);
    a model option there is refused like a changed config."""
    exp = recipe / "exp" / "more_mha"  # a copy: the fixture's model stays as it is
    shutil.copytree(recipe / "exp" / "mtla_mha", exp,
                    ignore=shutil.ignore_patterns("decode_*"))
    done = run(recipe, "--stage", "7", "--stop_stage", "7", "--attn_confs", "mha",
               "--tag", "more", "--train_args", "--max_epoch 3")
    assert done.returncode == 0, done.stderr[-3000:]
    log = (exp / "train.log").read_text()
    assert "3epoch results" in log and "2epoch results" not in log  # resumed, not restarted
    assert yaml.safe_load((exp / "config.yaml").read_text())["max_epoch"] == 3
    assert (exp / "config.yaml.1").exists()
    done = run(recipe, "--stage", "7", "--stop_stage", "7", "--attn_confs", "mha",
               "--tag", "more", "--train_args", "--max_epoch 4 --decoder_conf num_layers=3")
    assert done.returncode != 0 and "decoder_conf" in done.stderr
    assert "4epoch results" not in (exp / "train.log").read_text()


def test_stage8_leaves_nothing_of_earlier_decodes_and_keeps_finished_jobs(recipe):
    decode = recipe / "exp" / "mtla_mha" / "decode_test"
    stale = decode / "logdir" / "output.7"
    stale.mkdir(parents=True)
    (stale / "efficiency.json").write_text("{}")
    (decode / "score_wer" / "result.txt").write_text("WER 0.00 (stale)\n")
    reference = (decode / "1best_recog" / "text").read_text()
    done = run(recipe, "--stage", "8", "--stop_stage", "8", "--attn_confs", "mha")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not stale.exists() and not (decode / "score_wer").exists()
    assert "finished by the same run already" in done.stderr  # both jobs kept
    assert (decode / "1best_recog" / "text").read_text() == reference
    done = run(recipe, "--stage", "9", "--stop_stage", "9", "--attn_confs", "mha")
    assert done.returncode == 0 and (decode / "score_wer" / "result.txt").exists()


def test_results_list_every_decoded_variant(recipe):
    done = run(recipe, "--stage", "10", "--stop_stage", "10", "--attn_confs", "mtla_s2")
    assert done.returncode == 0, done.stderr[-3000:]
    results = (recipe / "RESULTS.md").read_text()
    assert "| mtla_mha |" in results and "| mtla_mtla_s2 |" in results


def test_training_before_its_inputs_exist_says_which_stage_to_run(recipe):
    done = run(recipe, "--stage", "7", "--stop_stage", "7", "--expdir", "exp_none")
    assert done.returncode != 0
    assert "exp_none/stats/train/speech_shape is missing: run the stages before 7" in done.stderr


def test_a_failing_stage_prints_the_end_of_its_log(recipe):
    config = yaml.safe_load((recipe / "conf" / "train.yaml").read_text())
    config["decoder_conf"]["num_layer"] = 3
    (recipe / "conf" / "typo.yaml").write_text(yaml.safe_dump(config))
    done = run(recipe, "--stage", "6", "--stop_stage", "6", "--expdir", "exp_typo",
               "--train_config", "conf/typo.yaml")
    assert done.returncode != 0
    assert "the last lines of exp_typo/stats/logdir/stats.log" in done.stderr
    assert "unknown key(s) 'num_layer'" in done.stderr
