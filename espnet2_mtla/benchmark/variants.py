"""The attention variants and model sizes the benchmark compares.

The variants are the repository's ``conf/attention/*.yaml`` fragments (the recipes'
sweep), read once: name -> (attention type, attention_conf). ``at_size(variants, tiny)``
gives them at the tiny latent sizes of a CPU smoke run without changing the table.
Fragments that also change the decoder (``decoder_conf``, e.g. ``merge_prefix: false``)
are recipe variants of a type, not types: the benchmark leaves them out.
"""

from pathlib import Path
from typing import Dict, Tuple

import yaml

ATTENTION_CONFS = Path(__file__).resolve().parents[2] / "conf" / "attention"
FAMILY_ORDER = ("mha", "mqa", "gqa", "mla", "mtla")  # the order of the printed tables

TINY_LATENT = dict(kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16)
# the paper's MuST-C model (BenchModel's size keys, plus the vocabulary), and a CPU one
PAPER_SIZES = dict(d_model=512, heads=8, ffn=2048, encoder_layers=12, decoder_layers=9,
                   vocab=10000)
TINY_SIZES = dict(d_model=64, heads=4, ffn=128, encoder_layers=1, decoder_layers=2, vocab=50)

Variants = Dict[str, Tuple[str, dict]]


def load_variants(directory: Path = ATTENTION_CONFS) -> Variants:
    """name -> (attention, attention_conf) of every ``<name>.yaml`` in ``directory``."""
    paths = sorted(Path(directory).glob("*.yaml"))
    if not paths:
        raise FileNotFoundError(f"no attention fragments (*.yaml) in {directory}: the "
                                "benchmark reads the repository's conf/attention/")
    variants = {}
    for path in paths:
        fragment = yaml.safe_load(path.read_text()) or {}
        if "attention" not in fragment:
            raise ValueError(f"{path}: no 'attention' key")
        if set(fragment) - {"attention", "attention_conf"}:
            continue  # a decoder option beside the type (see the module docstring)
        variants[path.stem] = (fragment["attention"], dict(fragment.get("attention_conf") or {}))

    def order(name):
        family = variants[name][0]
        return (FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER), name)

    return {name: variants[name] for name in sorted(variants, key=order)}


VARIANTS: Variants = load_variants()
LATENT = dict(VARIANTS["mla"][1])  # the paper's latent sizes (r 256, rope 32, ...)


def latent_sizes(tiny: bool) -> dict:
    return dict(TINY_LATENT if tiny else LATENT)


def at_size(variants: Variants, tiny: bool) -> Variants:
    """The variants with the tiny latent sizes when ``tiny`` (a new table)."""
    if not tiny:
        return dict(variants)
    return {name: (attention, {**conf, **TINY_LATENT} if "kv_lora_rank" in conf else conf)
            for name, (attention, conf) in variants.items()}


def sizes(tiny: bool) -> dict:
    return dict(TINY_SIZES if tiny else PAPER_SIZES)
