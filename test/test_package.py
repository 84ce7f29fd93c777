"""Package surface: torch-only imports, the factory and the ESPnet ClassChoices."""

import argparse
import subprocess
import sys

import pytest
import torch
import yaml

from espnet2_mtla.attention import ATTENTION_CLASSES, build_attention


def test_import_needs_only_torch():
    code = (
        "import sys, espnet2_mtla, espnet2_mtla.attention\n"
        "from espnet2_mtla import MultiheadTemporalLatentAttention\n"
        "heavy = {'espnet', 'espnet2', 's3prl', 'transformers', 'torchaudio', 'mtla'}\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & heavy)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("attention_type", sorted(ATTENTION_CLASSES))
def test_yaml_config_selects_the_type(attention_type, tmp_path):
    from espnet2_mtla.attention.choices import attention_choices

    conf = {
        "mha": {},
        "mqa": {},
        "gqa": {"num_kv_heads": 2},
        "mla": {"kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4},
        "mtla": {"kv_lora_rank": 16, "down_rate": 3, "qk_rope_head_dim": 4},
    }[attention_type]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"attention": attention_type, "attention_conf": conf}))
    parser = argparse.ArgumentParser()
    attention_choices.add_arguments(parser)
    parser.set_defaults(**yaml.safe_load(config.read_text()))  # as espnet's --config does
    args = parser.parse_args([])
    cls = attention_choices.get_class(args.attention)
    assert cls is ATTENTION_CLASSES[attention_type]
    module = build_attention(args.attention, 32, 4, **args.attention_conf)
    assert isinstance(module, cls)
    if attention_type == "mtla":
        assert module.down_rate == 3
    out = module(torch.randn(2, 5, 32))
    assert out.shape == (2, 5, 32)


def test_command_line_override_of_conf():
    from espnet2_mtla.attention.choices import attention_choices

    parser = argparse.ArgumentParser()
    attention_choices.add_arguments(parser)
    args = parser.parse_args(["--attention", "gqa", "--attention_conf", "num_kv_heads=4"])
    module = build_attention(args.attention, 64, 8, **args.attention_conf)
    assert module.num_kv_heads == 4
    with pytest.raises(SystemExit):
        parser.parse_args(["--attention", "flash"])
