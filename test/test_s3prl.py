"""S3PRL frontends offline: fbank-style and a local random HuBERT (weighted layers),
frozen or not, SSL feature pre-extraction, and the errors on bad configurations."""


import pytest
import torch
import yaml

from espnet2_mtla.bin.extract_ssl_feats import main as extract
from espnet2_mtla.bin.inference import main as inference
from espnet2_mtla.bin.make_ssl_checkpoint import main as make_checkpoint
from espnet2_mtla.frontend.s3prl import OfflineS3prlFrontend
from speech_fixtures import token_list, write_data_dir
from test_task_cli import CONFIG, train_cli


@pytest.fixture(scope="module")
def ssl_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssl")
    write_data_dir(root / "data")
    import soundfile
    (root / "data" / "speech_shape").write_text("".join(
        f"{key} {soundfile.info(path).frames}\n" for key, path in
        (line.split() for line in (root / "data" / "wav.scp").open())))
    (root / "tokens.txt").write_text("\n".join(token_list()) + "\n")
    for model in ("hubert", "wav2vec2", "wavlm"):
        assert make_checkpoint(["--model", model, "--out", str(root / f"{model}.pt")]) == 0
    return root


def s3prl_config(frontend_conf, **extra):
    config = {**CONFIG, "frontend": "s3prl",
              "frontend_conf": {"fs": 16000, **frontend_conf}, **extra}
    config["encoder_conf"] = {**CONFIG["encoder_conf"], "input_layer": "linear"}
    return config


def train(ssl_dir, name, config, *extra):
    (ssl_dir / f"{name}.yaml").write_text(yaml.safe_dump(config))
    out = ssl_dir / name
    args = []
    for mode in ("train", "valid"):
        args += [f"--{mode}_data_path_and_name_and_type", f"{ssl_dir}/data/wav.scp,speech,sound",
                 f"--{mode}_data_path_and_name_and_type", f"{ssl_dir}/data/text,text,text",
                 f"--{mode}_shape_file", f"{ssl_dir}/data/speech_shape"]
    train_cli(["--config", ssl_dir / f"{name}.yaml", "--token_list", ssl_dir / "tokens.txt",
               *args, "--output_dir", out, "--max_epoch", 1, *extra])
    return out


def weights(out, epoch=1):
    return torch.load(out / f"{epoch}epoch.pth", map_location="cpu")


@pytest.mark.parametrize("model", ["hubert", "wav2vec2", "wavlm"])
def test_random_local_checkpoints_load_through_s3prl(ssl_dir, model):
    frontend = OfflineS3prlFrontend(frontend_conf={
        "upstream": f"{model}_local", "path_or_url": str(ssl_dir / f"{model}.pt")},
        multilayer_feature=True)
    feats, lengths = frontend(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    assert feats.shape == (2, 50, 64) and lengths.tolist() == [50, 25]


def test_fbank_style_upstream_trains(ssl_dir):
    out = train(ssl_dir, "exp_fbank", s3prl_config({"frontend_conf": {"upstream": "fbank"}}))
    assert (out / "1epoch.pth").exists()
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["frontend"] == "s3prl"


def test_hubert_weighted_layers_learn_and_a_frozen_upstream_stays(ssl_dir):
    conf = {"frontend_conf": {"upstream": "hubert_local",
                              "path_or_url": str(ssl_dir / "hubert.pt")},
            "multilayer_feature": True}
    out = train(ssl_dir, "exp_hubert", s3prl_config(conf, freeze_param=["frontend.upstream"]))
    state = weights(out)
    initial = torch.load(ssl_dir / "hubert.pt", map_location="cpu")["model_weight"]
    layer_weights = state["frontend.featurizer.weights"]
    assert not torch.equal(layer_weights, torch.zeros_like(layer_weights))  # init: zeros
    upstream = {k.split("frontend.upstream.upstream.model.", 1)[1]: v
                for k, v in state.items() if k.startswith("frontend.upstream.upstream.model.")}
    assert upstream and all(torch.equal(v, initial[k]) for k, v in upstream.items())
    # not frozen: the upstream's weights move too
    tuned = weights(train(ssl_dir, "exp_hubert_tuned", s3prl_config(conf)))
    moved = [k for k in upstream
             if not torch.equal(tuned[f"frontend.upstream.upstream.model.{k}"], initial[k])]
    assert moved


def test_pre_extracted_features_train_and_decode_like_the_online_upstream(ssl_dir):
    conf = {"frontend_conf": {"upstream": "hubert_local",
                              "path_or_url": str(ssl_dir / "hubert.pt")},
            "multilayer_feature": True}
    online = train(ssl_dir, "exp_online", s3prl_config(conf, freeze_param=["frontend.upstream"]))
    feats = ssl_dir / "feats"
    assert extract(["--train_config", str(online / "config.yaml"), "--model_file",
                    str(online / "1epoch.pth"), "--data_dir", str(ssl_dir / "data"),
                    "--out_dir", str(feats), "--write_model", str(ssl_dir / "offline")]) == 0
    assert (feats / "feats.scp").exists() and (feats / "text").exists()

    def decode(config, model, data, output):
        inference(["--train_config", str(config), "--model_file", str(model),
                   "--data_path_and_name_and_type", data, "--output_dir", str(output),
                   "--beam_size", "3", "--maxlenratio", "-4"])
        return (output / "1best_recog" / "text").read_text()

    from_audio = decode(online / "config.yaml", online / "1epoch.pth",
                        f"{ssl_dir}/data/wav.scp,speech,sound", ssl_dir / "dec_online")
    from_ark = decode(ssl_dir / "offline" / "config.yaml", ssl_dir / "offline" / "model.pth",
                      f"{feats}/feats.scp,speech,kaldi_ark", ssl_dir / "dec_ark")
    assert from_ark == from_audio and len(from_audio.splitlines()) == 5
    # and a model trains on the stored features (kaldi_ark, no frontend)
    shape = feats / "shape"
    shape.write_text("".join(f"{k} {v},64\n" for k, v in
                             (line.split() for line in (feats / "utt2num_frames").open())))
    config = {**CONFIG, "fold_length": [800]}
    config["encoder_conf"] = {**CONFIG["encoder_conf"], "input_layer": "linear"}
    (ssl_dir / "ark.yaml").write_text(yaml.safe_dump(config))
    args = []
    for mode in ("train", "valid"):
        args += [f"--{mode}_data_path_and_name_and_type", f"{feats}/feats.scp,speech,kaldi_ark",
                 f"--{mode}_data_path_and_name_and_type", f"{feats}/text,text,text",
                 f"--{mode}_shape_file", str(shape)]
    train_cli(["--config", ssl_dir / "ark.yaml", "--token_list", ssl_dir / "tokens.txt",
               "--input_size", 64, *args, "--output_dir", ssl_dir / "exp_ark", "--max_epoch", 1])
    assert (ssl_dir / "exp_ark" / "1epoch.pth").exists()


@pytest.mark.parametrize("conf, message", [
    ({"frontend_conf": {"upstream": "hubert_local", "path_or_url": "/no/such/hubert.pt"}},
     "/no/such/hubert.pt"),
    ({"frontend_conf": {"upstream": "hubert_local"}}, "needs frontend_conf.frontend_conf.path_or_url"),
    ({"frontend_conf": {"upstream": "hubert"}}, "use hubert_local"),
    ({"frontend_conf": {"upstream": "wavlm_custom", "path_or_url": "https://x/y.pt"}}, "is a URL"),
    ({"frontend_conf": {"upstream": "wavlm_url"}}, "use wavlm_local"),
    ({"fs": 8000, "frontend_conf": {"upstream": "fbank"}}, "expect 16000 Hz"),
])
def test_bad_s3prl_configurations_are_clear_errors(conf, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        OfflineS3prlFrontend(**conf)


def test_wrong_sample_rate_of_the_data_is_refused_before_training(ssl_dir, tmp_path):
    write_data_dir(tmp_path / "data8k", fs=8000)
    config = s3prl_config({"frontend_conf": {"upstream": "fbank"}})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    args = []
    for mode in ("train", "valid"):
        args += [f"--{mode}_data_path_and_name_and_type", f"{tmp_path}/data8k/wav.scp,speech,sound",
                 f"--{mode}_data_path_and_name_and_type", f"{tmp_path}/data8k/text,text,text",
                 f"--{mode}_shape_file", f"{ssl_dir}/data/speech_shape"]
    with pytest.raises(ValueError, match="8000 Hz"):
        train_cli(["--config", tmp_path / "c.yaml", "--token_list", ssl_dir / "tokens.txt",
                   *args, "--output_dir", tmp_path / "exp"])
