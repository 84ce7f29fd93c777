"""The training and inference command lines on a tiny data set (CPU)."""

import json
import logging
import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
import yaml
from espnet2.train.distributed_utils import free_port

from speech_fixtures import TRANSCRIPTS, token_list, write_data_dir

CONFIG = {
    "frontend": "default",
    "frontend_conf": {"n_fft": 400, "hop_length": 160, "n_mels": 20},
    "normalize": "utterance_mvn",
    "encoder": "linear",
    "encoder_conf": {"output_size": 32, "input_layer": "conv2d", "dropout_rate": 0.0},
    "decoder": "decoder_only",
    "decoder_conf": {"d_model": 32, "num_heads": 4, "num_layers": 2, "ffn_dim": 64,
                     "dropout": 0.0, "prefix_mode": "memory"},
    "attention": "mtla",
    "attention_conf": {"kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4,
                       "v_head_dim": 8, "down_rate": 2},
    "model_conf": {"lsm_weight": 0.0},
    "optim": "adam",
    "optim_conf": {"lr": 0.005},
    "batch_type": "folded",
    "batch_size": 5,
    "fold_length": [80000],
    "max_epoch": 1,
    "num_workers": 0,
    "token_type": "char",
    "seed": 0,
    "use_tensorboard": False,
}


def train_cli(cmd):
    from espnet2_mtla.bin.train import main

    main(cmd=[str(part) for part in cmd])


def data_args(data_dir, stats_dir):
    args = []
    for mode in ("train", "valid"):
        args += [f"--{mode}_data_path_and_name_and_type", f"{data_dir}/wav.scp,speech,sound",
                 f"--{mode}_data_path_and_name_and_type", f"{data_dir}/text,text,text",
                 f"--{mode}_shape_file", f"{stats_dir}/{mode}/speech_shape"
                 if stats_dir else f"{data_dir}/wav.scp"]
    return args


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """data/train, token list, config and collected statistics (espnet's collect_stats)."""
    root = tmp_path_factory.mktemp("cli")
    write_data_dir(root / "data" / "train")
    (root / "tokens.txt").write_text("\n".join(token_list()) + "\n")
    (root / "conf.yaml").write_text(yaml.safe_dump(CONFIG))
    train_cli(["--config", root / "conf.yaml", "--token_list", root / "tokens.txt",
               "--collect_stats", "true", "--output_dir", root / "stats",
               *data_args(root / "data/train", None)])
    assert (root / "stats/train/speech_shape").exists()
    assert (root / "stats/train/feats_stats.npz").exists()
    return root


def common_args(workdir, data_dir=None, config=None):
    return ["--config", config or workdir / "conf.yaml", "--token_list", workdir / "tokens.txt",
            *data_args(data_dir or workdir / "data/train", workdir / "stats")]


def test_resume_continues_at_next_epoch_with_same_optimizer_state(workdir, caplog):
    resumed, continuous = workdir / "exp_resumed", workdir / "exp_continuous"
    train_cli([*common_args(workdir), "--output_dir", resumed, "--max_epoch", 1])
    state = torch.load(resumed / "checkpoint.pth", weights_only=False)
    assert state["reporter"]["epoch"] == 1
    with caplog.at_level(logging.INFO):
        train_cli([*common_args(workdir), "--output_dir", resumed, "--max_epoch", 2,
                   "--resume", "true"])
    assert "The training was resumed" in caplog.text
    assert "2/2epoch started" in caplog.text and "1/2epoch started" not in caplog.text
    train_cli([*common_args(workdir), "--output_dir", continuous, "--max_epoch", 2])

    for name in ("2epoch.pth",):
        a = torch.load(resumed / name)
        b = torch.load(continuous / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.allclose(a[key], b[key], atol=1e-6), key
    optim_a = torch.load(resumed / "checkpoint.pth", weights_only=False)["optimizers"][0]
    optim_b = torch.load(continuous / "checkpoint.pth", weights_only=False)["optimizers"][0]
    for param_id, param_state in optim_a["state"].items():
        assert float(param_state["step"]) == 2.0
        assert torch.allclose(param_state["exp_avg"], optim_b["state"][param_id]["exp_avg"],
                              atol=1e-6)


def test_ddp_with_two_cpu_processes_trains_one_epoch(workdir):
    output = workdir / "exp_ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(free_port()), "-m", "espnet2_mtla.bin.train",
           *map(str, common_args(workdir)), "--output_dir", str(output),
           "--ngpu", "0", "--dist_backend", "gloo", "--batch_size", "2"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert ":0/2]" in run.stderr  # espnet logs "[host:rank/world_size]" from rank 0
    assert (output / "1epoch.pth").exists()


def test_inference_writes_sorted_outputs_and_an_efficiency_report(workdir, capsys):
    from espnet2_mtla.bin.inference import main as inference_main

    model_dir = workdir / "exp_infer"
    train_cli([*common_args(workdir), "--output_dir", model_dir, "--max_epoch", 2])

    def decode(output, *options):
        inference_main([
            "--train_config", str(model_dir / "config.yaml"),
            "--model_file", str(model_dir / "2epoch.pth"),
            "--data_path_and_name_and_type", f"{workdir}/data/train/wav.scp,speech,sound",
            "--output_dir", str(output), "--beam_size", "2", "--maxlenratio", "-5", *options,
        ])

    output = workdir / "decode"
    decode(output, "--batch_size", "3", "--nbest", "2")
    keys = sorted(TRANSCRIPTS)
    for rank in (1, 2):
        for name in ("text", "token", "token_int", "score"):
            lines = (output / f"{rank}best_recog" / name).read_text().splitlines()
            assert [line.split(maxsplit=1)[0] for line in lines] == keys, (rank, name)
    scores = dict(line.split() for line in (output / "1best_recog/score").read_text().splitlines())
    assert all(float(value) <= 0 for value in scores.values())
    report = json.loads((output / "efficiency.json").read_text())
    assert report["utterances"] == 5 and report["peak_gpu_memory_bytes"] == "n/a"
    assert report["decode_wall_time_s"] > 0 and report["peak_kv_cache_bytes"] > 0
    assert report["tokens_per_s"] > 0 and report["attention"] == "mtla"
    assert "utterances_per_s" in capsys.readouterr().out

    low = workdir / "decode_bf16"
    decode(low, "--batch_size", "5", "--dtype", "bfloat16")
    lines = (low / "1best_recog" / "text").read_text().splitlines()
    assert [line.split(maxsplit=1)[0] for line in lines] == keys
    assert json.loads((low / "efficiency.json").read_text())["dtype"] == "bfloat16"


def test_decode_config_ctc_weight_and_command_line_precedence(workdir, tmp_path):
    """--config YAML sets decoding options, the command line wins; joint CTC decoding of a
    model trained with CTC; a bad weight, a missing config, a model without CTC refused."""
    from espnet2_mtla.bin.inference import main as inference_main

    config = tmp_path / "conf.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "model_conf": {"lsm_weight": 0.0,
                                                                "ctc_weight": 0.3}}))
    model_dir = workdir / "exp_ctc"
    train_cli([*common_args(workdir, config=config), "--output_dir", model_dir])

    def decode(output, *options, model=model_dir):
        inference_main([
            "--train_config", str(model / "config.yaml"),
            "--model_file", str(model / "1epoch.pth"),
            "--data_path_and_name_and_type", f"{workdir}/data/train/wav.scp,speech,sound",
            "--output_dir", str(output), "--maxlenratio", "-5", *options])
        return json.loads((output / "efficiency.json").read_text())

    decode_yaml = tmp_path / "decode.yaml"
    decode_yaml.write_text("beam_size: 2\nctc_weight: 0.3\nbatch_size: 5\n")
    report = decode(tmp_path / "joint", "--config", str(decode_yaml), "--beam_size", "3")
    assert (report["ctc_weight"], report["beam_size"], report["batch_size"]) == (0.3, 3, 5)
    assert len((tmp_path / "joint/1best_recog/text").read_text().splitlines()) == 5
    # each utterance's prefix held once for its beams: the same transcripts
    decode(tmp_path / "shared", "--config", str(decode_yaml), "--beam_size", "3",
           "--share_prefix", "true")
    assert ((tmp_path / "shared/1best_recog/text").read_text()
            == (tmp_path / "joint/1best_recog/text").read_text())

    for options, message in [
        (["--ctc_weight", "1.5"], "--ctc_weight must be in"),
        (["--config", str(tmp_path / "missing.yaml")], "missing.yaml"),
    ]:
        with pytest.raises(SystemExit):
            decode(tmp_path / "bad", *options)
    without_ctc = workdir / "exp_no_ctc"
    train_cli([*common_args(workdir), "--output_dir", without_ctc])
    with pytest.raises(SystemExit, match="no CTC layer"):
        decode(tmp_path / "bad", "--ctc_weight", "0.3", model=without_ctc)


def test_decode_config_errors_name_the_option(tmp_path, capsys):
    from espnet2_mtla.bin.inference import parse_args

    required = ["--output_dir", "o", "--data_path_and_name_and_type", "a,speech,sound",
                "--train_config", "c", "--model_file", "m"]
    config = tmp_path / "decode.yaml"
    config.write_text("beam_sise: 2\n")
    with pytest.raises(SystemExit):
        parse_args([*required, "--config", str(config)])
    assert "unknown option(s) beam_sise" in capsys.readouterr().err
    config.write_text("ctc_weight: high\n")
    with pytest.raises(SystemExit):
        parse_args([*required, "--config", str(config)])
    assert "--ctc_weight: invalid float value: 'high'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args([*required, "--ctc_weight", "-0.5"])
    assert "--ctc_weight must be in [0, 1], got -0.5" in capsys.readouterr().err
    config.write_text("ctc_weight: 0.3\nbeam_size: 4\n")
    args = parse_args([*required, "--config", str(config), "--ctc_weight", "0.5"])
    assert (args.ctc_weight, args.beam_size) == (0.5, 4)


def bad_data(workdir, name, fs=16000):
    directory = workdir / "bad" / name
    write_data_dir(directory, fs=fs)
    return directory


def test_missing_and_corrupt_audio_name_the_utterance(workdir):
    """Every utterance is checked before training starts (not when espnet reaches it)."""
    missing = bad_data(workdir, "missing")
    (missing / "utt3.flac").unlink()
    corrupt = bad_data(workdir, "corrupt")
    (corrupt / "utt4.flac").write_bytes(b"not audio at all")
    for directory, key in ((missing, "utt3"), (corrupt, "utt4")):
        with pytest.raises(ValueError) as error:
            train_cli([*common_args(workdir, directory), "--output_dir", directory / "exp"])
        assert f"utterance {key}" in str(error.value) and f"{key}.flac" in str(error.value)
        assert not (directory / "exp").exists()


def test_stereo_empty_and_late_narrowband_audio_are_refused(workdir):
    """Not only the first file: an 8 kHz file after 16 kHz ones, a stereo file and an
    empty one are named before statistics collection or training reads anything."""
    mixed = bad_data(workdir, "mixed")
    audio, rate = soundfile.read(str(mixed / "utt4.flac"))
    soundfile.write(str(mixed / "utt4.flac"), audio[::2], 8000)
    soundfile.write(str(mixed / "utt2.flac"), np.stack([audio, audio], axis=1), rate)
    soundfile.write(str(mixed / "utt3.flac"), np.zeros(0), rate, format="WAV")  # 0 frames
    for mode in (["--collect_stats", "true"], []):
        with pytest.raises(ValueError) as error:
            train_cli([*common_args(workdir, mixed), *mode, "--output_dir", mixed / "exp"])
        message = str(error.value)
        assert "3 utterance(s)" in message
        assert "utt4" in message and "8000 Hz" in message and "16000 Hz" in message
        assert "utt2" in message and "2 channels" in message
        assert "utt3" in message and "no samples" in message


def test_text_that_is_not_utf8_names_file_and_line(workdir):
    latin = bad_data(workdir, "latin1")
    lines = (latin / "text").read_bytes().splitlines()
    lines[2] = lines[2] + b" caf\xe9"
    (latin / "text").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ValueError, match=r"text:3: byte 0xe9 .* not UTF-8"):
        train_cli([*common_args(workdir, latin), "--output_dir", latin / "exp"])


def test_unknown_key_in_a_conf_names_it(workdir):
    config = {**CONFIG, "decoder_conf": {**CONFIG["decoder_conf"], "num_layer": 3}}
    path = workdir / "bad_num_layer.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="decoder_conf: unknown key.*'num_layer'.*"
                                         "did you mean 'num_layers'"):
        train_cli([*common_args(workdir, config=path), "--output_dir", workdir / "exp_nl"])


def test_first_audio_missing_is_a_clear_error(workdir):
    missing = bad_data(workdir, "missing_first")
    (missing / "utt1.flac").unlink()
    with pytest.raises(ValueError, match="utt1.*utt1.flac"):
        train_cli([*common_args(workdir, missing), "--output_dir", missing / "exp"])


def test_empty_transcript_names_the_utterance(workdir):
    empty = bad_data(workdir, "empty")
    lines = (empty / "text").read_text().splitlines()
    lines[1] = lines[1].split()[0] + "   "  # utt2: spaces only after the key
    (empty / "text").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="utt2.*empty transcript"):
        train_cli([*common_args(workdir, empty), "--output_dir", empty / "exp"])


def test_wrong_sample_rate_is_a_clear_error(workdir):
    narrowband = bad_data(workdir, "8k", fs=8000)
    assert soundfile.info(str(narrowband / "utt1.flac")).samplerate == 8000
    with pytest.raises(ValueError, match="utt1.*8000 Hz.*16000 Hz"):
        train_cli([*common_args(workdir, narrowband), "--output_dir", narrowband / "exp"])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"attention": "flash"}, "attention type .flash. is unknown"),
        ({"attention_conf": {"down_rte": 2}}, "down_rte"),
        ({"attention_conf": {"down_rate": 0}}, "down_rate"),
        ({"decoder_conf": {"prefix_mode": "side"}}, "prefix_mode"),
    ],
)
def test_bad_yaml_is_a_clear_error(workdir, change, message):
    config = {**CONFIG, **change}
    path = workdir / f"bad_{abs(hash(str(change)))}.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=message):
        train_cli([*common_args(workdir, config=path), "--output_dir", workdir / "exp_bad"])


def test_kaldi_ark_features_train_without_a_frontend(workdir):
    """Features read by espnet's kaldi_ark loader (--input_size, no frontend)."""
    import kaldiio
    import numpy as np

    from speech_fixtures import DURATIONS, synth_audio

    ark_dir = workdir / "data" / "ark"
    ark_dir.mkdir(parents=True)
    with kaldiio.WriteHelper(f"ark,scp:{ark_dir}/feats.ark,{ark_dir}/feats.scp") as writer:
        for key in sorted(TRANSCRIPTS):
            audio = synth_audio(int(key[3:]), DURATIONS[key])
            frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
            writer(key, np.log(np.abs(np.fft.rfft(frames))[:, :20] + 1e-3).astype(np.float32))
    (ark_dir / "text").write_text((workdir / "data/train/text").read_text())
    shapes = ark_dir / "shape"
    shapes.write_text("".join(f"{k} {v.shape[0]},20\n" for k, v in kaldiio.load_scp(
        str(ark_dir / "feats.scp")).items()))
    args = []
    for mode in ("train", "valid"):
        args += [f"--{mode}_data_path_and_name_and_type", f"{ark_dir}/feats.scp,speech,kaldi_ark",
                 f"--{mode}_data_path_and_name_and_type", f"{ark_dir}/text,text,text",
                 f"--{mode}_shape_file", str(shapes)]
    output = workdir / "exp_ark"
    config_path = workdir / "conf_ark.yaml"
    config_path.write_text(yaml.safe_dump({**CONFIG, "fold_length": [800]}))
    train_cli(["--config", config_path, "--token_list", workdir / "tokens.txt",
               "--input_size", 20, *args, "--output_dir", output])
    config = yaml.safe_load((output / "config.yaml").read_text())
    assert config["frontend"] is None and config["input_size"] == 20
    assert (output / "1epoch.pth").exists()


def test_ngpu_means_one_process_per_gpu_not_data_parallel():
    """--ngpu 2 resolves to espnet's spawned DDP (multiprocessing_distributed), the mode
    ESPnet recipes use; without our default espnet would fall back to DataParallel."""
    from espnet2.train.distributed_utils import resolve_distributed_mode

    from espnet2_mtla.bin.train import get_parser

    args = get_parser().parse_args(["--ngpu", "2", "--token_list", "tokens.txt"])
    resolve_distributed_mode(args)
    assert args.distributed and args.multiprocessing_distributed


@pytest.mark.parametrize(
    "options, environment, message",
    [
        (["--ngpu", "1"], {"LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "2", "RANK": "0",
                           "LOCAL_RANK": "0"}, "LOCAL_WORLD_SIZE.*--nproc_per_node 1"),
        (["--ngpu", "64"], {}, "--ngpu 64, but .* GPU.* visible"),
    ],
)
def test_gpu_launch_mistakes_are_clear_errors(workdir, monkeypatch, options, environment,
                                              message):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        train_cli([*common_args(workdir), "--output_dir", workdir / "exp_launch", *options])
    assert not (workdir / "exp_launch").exists()


def _start_method_after_fork_fix(queue):
    from espnet2_mtla.tasks.launch_checks import fork_data_loader_workers

    before = multiprocessing.get_start_method()
    fork_data_loader_workers()
    queue.put((before, multiprocessing.get_start_method()))


def test_spawned_gpu_processes_fork_their_data_loader_workers():
    """espnet starts one process per GPU by spawn; its data loader workers must not be
    spawned too (each would re-import espnet, every epoch)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_start_method_after_fork_fix, args=(queue,))
    process.start()
    before, after = queue.get(timeout=300)
    process.join(timeout=60)
    assert (before, after) == ("spawn", "fork")


def test_preprocessor_conf_augments_training_data_only():
    """preprocessor_conf reaches espnet's CommonPreprocessor: online speed perturbation
    (0.9: 1/0.9 as many samples) in training, none in decoding."""
    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask
    from speech_fixtures import tiny_args

    args = tiny_args("mha", "memory", preprocessor_conf={
        "fs": 16000, "data_aug_effects": [[1.0, "speed_perturb", {"factor": 0.9}]],
        "data_aug_num": [1, 1], "data_aug_prob": 1.0})
    speech = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    train = DecoderOnlyTask.build_preprocess_fn(args, True)("utt1", {
        "speech": speech.copy(), "text": "hello world"})
    decode = DecoderOnlyTask.build_preprocess_fn(args, False)("utt1", {
        "speech": speech.copy(), "text": "hello world"})
    assert abs(len(train["speech"]) - 16000 / 0.9) < 20
    assert len(decode["speech"]) == 16000
