#!/usr/bin/env python3
"""Write a small randomly initialised HuBERT, wav2vec 2.0 or WavLM checkpoint in the
format s3prl's ``hubert_local`` / ``wav2vec2_local`` / ``wavlm_local`` upstreams read, so
tests and demos exercise s3prl's real loading code with no hub access.

    python -m espnet2_mtla.bin.make_ssl_checkpoint --model hubert --out exp/ssl/hubert_tiny.pt

Sizes default to a tiny model (2 layers of 64); the convolutional feature extractor keeps
the standard strides (320 samples per frame at 16 kHz) with narrow channels.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from espnet2_mtla.compat import import_s3prl_nn


def _sizes(args):
    channels = args.conv_channels
    return dict(
        encoder_layers=args.layers, encoder_embed_dim=args.dim,
        encoder_ffn_embed_dim=4 * args.dim, encoder_attention_heads=args.heads,
        conv_feature_layers=f"[({channels},10,5)] + [({channels},3,2)] * 4 + [({channels},2,2)] * 2",
        conv_pos=16, conv_pos_groups=4, final_dim=args.dim)


def hubert(args) -> dict:
    from s3prl.upstream.hubert.hubert_model import (HubertConfig, HubertModel,
                                                    HubertPretrainingConfig)

    task = HubertPretrainingConfig(label_rate=50.0, sample_rate=16000, normalize=False)
    model_cfg = HubertConfig(label_rate=50.0, **_sizes(args))
    symbols = [["<s>", "<pad>", "</s>", "<unk>"] + [str(i) for i in range(args.targets)]]
    model = HubertModel(model_cfg, task, symbols)
    return {"task_cfg": dataclasses.asdict(task), "model_cfg": dataclasses.asdict(model_cfg),
            "model_weight": model.state_dict(), "dictionaries_symbols": symbols}


def wav2vec2(args) -> dict:
    from s3prl.upstream.wav2vec2.wav2vec2_model import (AudioPretrainingConfig,
                                                        Wav2Vec2Config, Wav2Vec2Model)

    task = AudioPretrainingConfig(sample_rate=16000, normalize=False)
    model_cfg = Wav2Vec2Config(**_sizes(args), latent_vars=32, latent_groups=2)
    model = Wav2Vec2Model(model_cfg)
    return {"task_cfg": dataclasses.asdict(task), "model_cfg": dataclasses.asdict(model_cfg),
            "model_weight": model.state_dict()}


def wavlm(args) -> dict:
    from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

    sizes = _sizes(args)
    sizes.pop("final_dim")
    cfg = {**sizes, "normalize": False, "relative_position_embedding": True,
           "num_buckets": 32, "max_distance": 64, "gru_rel_pos": True}
    model = WavLM(WavLMConfig(cfg))
    return {"cfg": cfg, "model": model.state_dict()}


MODELS = {"hubert": hubert, "wav2vec2": wav2vec2, "wavlm": wavlm}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="hubert")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--conv_channels", type=int, default=64)
    parser.add_argument("--targets", type=int, default=50, help="hubert: cluster targets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import_s3prl_nn()  # the torchaudio shim, before s3prl's modules are imported
    torch.manual_seed(args.seed)
    state = MODELS[args.model](args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    print(f"make_ssl_checkpoint: {args.model} ({args.layers} layers of {args.dim}) -> "
          f"{args.out}; use upstream {args.model}_local with path_or_url {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
