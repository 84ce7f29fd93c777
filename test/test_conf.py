"""The shared conf/ fragments merge into configs that the task parses and builds."""

from pathlib import Path

import pytest
import torch
import yaml

from espnet2_mtla.bin.merge_config import main as merge_main, merge
from speech_fixtures import KEYS_ORDER, speech_batch, token_list

CONF = Path(__file__).resolve().parent.parent / "conf"
BASE = {
    "encoder": "linear",
    "encoder_conf": {"output_size": 32, "input_layer": "conv2d"},
    "decoder_conf": {"d_model": 64, "num_heads": 8, "num_layers": 1, "ffn_dim": 64},
    "token_type": "char",
}


def test_merge_is_deep_and_later_files_win():
    merged = merge({"a": {"x": 1, "y": 2}, "b": [1]}, {"a": {"y": 3}, "b": [2]})
    assert merged == {"a": {"x": 1, "y": 3}, "b": [2]}


FRONTENDS = sorted(p.name for p in (CONF / "frontend").glob("*.yaml"))
SSL_FRONTENDS = [name for name in FRONTENDS if "path_or_url" in (CONF / "frontend" / name).read_text()]
ATTENTIONS = sorted(p.name for p in (CONF / "attention").glob("*.yaml"))


@pytest.fixture(scope="module")
def ssl_checkpoints(tmp_path_factory):
    """Small random checkpoints standing in for the fragments' placeholder paths."""
    from espnet2_mtla.bin.make_ssl_checkpoint import main as make_checkpoint

    root = tmp_path_factory.mktemp("ckpt")
    for name in SSL_FRONTENDS:
        model = name.removesuffix(".yaml")
        assert make_checkpoint(["--model", model, "--out", str(root / f"{model}.pt")]) == 0
    return root


def fragment_with_checkpoint(frontend, checkpoints, tmp_path):
    config = yaml.safe_load((CONF / "frontend" / frontend).read_text())
    if frontend in SSL_FRONTENDS:
        config["frontend_conf"]["frontend_conf"]["path_or_url"] = str(
            checkpoints / frontend.replace(".yaml", ".pt"))
    path = tmp_path / f"frontend_{frontend}"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("attention, frontend", [
    *[(a, f) for a in ATTENTIONS for f in FRONTENDS if f not in SSL_FRONTENDS],
    *[("mtla_s2.yaml", f) for f in SSL_FRONTENDS]])
def test_fragments_build_a_model(attention, frontend, tmp_path, ssl_checkpoints):
    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask

    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(BASE))
    merged_path = tmp_path / "config.yaml"
    merge_main([str(base), str(CONF / "attention" / attention),
                str(fragment_with_checkpoint(frontend, ssl_checkpoints, tmp_path)),
                "-o", str(merged_path)])
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(token_list()) + "\n")
    args = DecoderOnlyTask.get_parser().parse_args(
        ["--config", str(merged_path), "--token_list", str(tokens)]
    )
    fragment = yaml.safe_load((CONF / "attention" / attention).read_text())
    assert args.attention == fragment["attention"]
    torch.manual_seed(0)
    model = DecoderOnlyTask.build_model(args)
    layer_attention = model.decoder.layers[0].attn
    if "down_rate" in fragment["attention_conf"]:
        assert layer_attention.down_rate == fragment["attention_conf"]["down_rate"]
    if "num_kv_heads" in fragment["attention_conf"]:
        assert layer_attention.num_kv_heads == fragment["attention_conf"]["num_kv_heads"]
    loss, stats, _ = model(**speech_batch(KEYS_ORDER[:2]))
    assert torch.isfinite(loss)


@pytest.mark.parametrize("frontend", SSL_FRONTENDS)
def test_ssl_fragment_placeholder_path_is_a_clear_error(frontend, tmp_path):
    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask

    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(BASE))
    merged_path = tmp_path / "config.yaml"
    merge_main([str(base), str(CONF / "attention" / "mha.yaml"), str(CONF / "frontend" / frontend),
                "-o", str(merged_path)])
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(token_list()) + "\n")
    args = DecoderOnlyTask.get_parser().parse_args(
        ["--config", str(merged_path), "--token_list", str(tokens)])
    with pytest.raises(ValueError, match="/path/to/.*missing or unreadable"):
        DecoderOnlyTask.build_model(args)


MINI_ATTENTION = CONF.parent / "egs2" / "mini_en" / "asr1" / "conf" / "attention"


@pytest.mark.parametrize("attention", sorted(p.name for p in MINI_ATTENTION.glob("*.yaml")))
def test_mini_recipe_fragments_build_a_model(attention, tmp_path):
    """The mini recipes' own fragments (their models' sizes; mini_slu and mini_en_de
    link to these) merge over a config and train a step, decoder keys included."""
    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask

    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({**BASE, "decoder_conf": {**BASE["decoder_conf"],
                                                             "d_model": 128, "num_heads": 4}}))
    merged_path = tmp_path / "config.yaml"
    merge_main([str(base), str(MINI_ATTENTION / attention), "-o", str(merged_path)])
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(token_list()) + "\n")
    args = DecoderOnlyTask.get_parser().parse_args(
        ["--config", str(merged_path), "--token_list", str(tokens)])
    fragment = yaml.safe_load((MINI_ATTENTION / attention).read_text())
    for key, value in fragment.get("decoder_conf", {}).items():
        assert args.decoder_conf[key] == value
    torch.manual_seed(0)
    model = DecoderOnlyTask.build_model(args)
    if "down_rate" in fragment["attention_conf"]:
        assert model.decoder.layers[0].attn.down_rate == fragment["attention_conf"]["down_rate"]
    unmerged = not fragment.get("decoder_conf", {}).get("merge_prefix", True)
    assert model.decoder.prefix_stride == (fragment["attention_conf"]["down_rate"] if unmerged else 1)
    loss, _, _ = model(**speech_batch(KEYS_ORDER[:2]))
    assert torch.isfinite(loss)
