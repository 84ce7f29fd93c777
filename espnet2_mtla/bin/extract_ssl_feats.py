#!/usr/bin/env python3
"""Run an S3PRL upstream once over a data dir and store its features as Kaldi ark + scp
(kaldiio), so training and decoding read them (``feats.scp,speech,kaldi_ark``) instead
of running the upstream again (mtla.sh --feats_type ssl).

    # the frontend of a trained model (its learned layer weights):
    python -m espnet2_mtla.bin.extract_ssl_feats --train_config exp/m/config.yaml \
        --model_file exp/m/valid.acc.ave.pth --data_dir dump/raw/test --out_dir dump/ssl/test \
        --write_model exp/m_ssl
    # or a frontend fragment (fixed layer, or the initial uniform layer weights):
    python -m espnet2_mtla.bin.extract_ssl_feats --frontend_config conf/frontend/hubert.yaml \
        --data_dir dump/raw/train --out_dir dump/ssl/train

Each utterance is run alone (as decoding does), so features do not depend on batching.
Writes ``feats.scp``/``feats.ark``, ``utt2num_frames``, copies the data dir's text files;
an unreadable utterance is reported by key and left out. ``--write_model DIR`` also writes
the model without its frontend (DIR/config.yaml with ``input_size``, DIR/model.pth) to
decode from the stored features with the same weights.
"""

import argparse
import logging
import sys
from pathlib import Path

import kaldiio
import torch
import yaml
from tqdm import tqdm

from espnet2_mtla.bin.format_audio import load
from espnet2_mtla.data.datadir import copy_utterance_files
from espnet2_mtla.data.kaldi_files import read_map, write_map


def frontend_from_config(path: str):
    from espnet2_mtla.frontend.s3prl import OfflineS3prlFrontend

    config = yaml.safe_load(Path(path).read_text())
    if config.get("frontend") != "s3prl":
        raise ValueError(f"{path}: frontend must be s3prl, got {config.get('frontend')!r}")
    return OfflineS3prlFrontend(**config.get("frontend_conf", {}))


def model_from_files(train_config: str, model_file: str):
    from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask

    model, _ = DecoderOnlyTask.build_model_from_file(train_config, model_file, "cpu")
    if model.frontend is None or getattr(model.frontend, "frontend_type", None) != "s3prl":
        raise ValueError(f"{train_config}: the model has no s3prl frontend to extract with")
    return model


def write_frontendless_model(model, train_config: str, feature_dim: int, out_dir: Path):
    """The model without its frontend: config (input_size, frontend null) and weights."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(Path(train_config).read_text())
    config.update(frontend=None, frontend_conf={}, input_size=feature_dim)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("frontend.")}
    torch.save(state, out_dir / "model.pth")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--frontend_config", help="YAML with frontend: s3prl + frontend_conf")
    source.add_argument("--train_config", help="a trained model's config.yaml")
    parser.add_argument("--model_file", help="with --train_config: its weights")
    parser.add_argument("--data_dir", required=True, type=Path)
    parser.add_argument("--out_dir", required=True, type=Path)
    parser.add_argument("--write_model", type=Path, default=None)
    parser.add_argument("--fs", type=int, default=16000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.train_config:
            if not args.model_file:
                raise ValueError("--train_config needs --model_file")
            model = model_from_files(args.train_config, args.model_file)
            frontend = model.frontend
        else:
            model, frontend = None, frontend_from_config(args.frontend_config)
    except (ValueError, OSError) as error:
        logging.error("%s", error)
        return 1
    frontend.eval()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    done_mark = args.out_dir / ".done"
    recordings = read_map(args.data_dir / "wav.scp")[0]
    if done_mark.exists():
        logging.info("%s: features extracted already", args.out_dir)
    else:
        frames, failed, feature_dim = {}, [], None
        ark, scp = args.out_dir / "feats.ark", args.out_dir / "feats.scp"
        with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer, torch.no_grad():
            for key, entry in tqdm(sorted(recordings.items()), desc=f"ssl -> {args.out_dir}",
                                   unit="utt"):
                try:
                    samples = torch.from_numpy(load(entry, args.fs))[None]  # (1, T)
                    feats, lengths = frontend(samples, torch.tensor([samples.shape[1]]))
                except Exception as error:
                    failed.append(key)
                    logging.warning("utterance %s (%s): cannot extract: %s", key, entry, error)
                    continue
                matrix = feats[0, : int(lengths[0])].float().numpy()  # (frames, D)
                writer(key, matrix)
                frames[key], feature_dim = str(matrix.shape[0]), matrix.shape[1]
        if failed:
            logging.warning("%d of %d utterances left out, e.g. %s", len(failed),
                            len(recordings), failed[0])
        write_map(args.out_dir / "utt2num_frames", frames)
        (args.out_dir / "feats_dim").write_text(f"{feature_dim}\n")
        copy_utterance_files(args.data_dir, args.out_dir, frames)
        done_mark.touch()
    if args.write_model is not None:
        if model is None:
            logging.error("--write_model needs --train_config/--model_file")
            return 1
        dim = int((args.out_dir / "feats_dim").read_text())
        write_frontendless_model(model, args.train_config, dim, args.write_model)
        logging.info("model without frontend -> %s", args.write_model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
