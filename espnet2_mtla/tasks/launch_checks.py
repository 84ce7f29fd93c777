"""What a training start checks before espnet runs: that an experiment directory's weights
are never trained on with another model configuration, that GPU processes are launched
one per GPU, and that the per-GPU processes start their data-loader workers by fork.
``DecoderOnlyTask.main`` and ``main_worker`` call these."""

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

import torch
import yaml


# the options that define the model's parameters: an experiment keeps them
MODEL_OPTIONS = ("frontend", "frontend_conf", "specaug", "specaug_conf", "normalize",
                 "normalize_conf", "encoder", "encoder_conf", "decoder", "decoder_conf",
                 "attention", "attention_conf", "model_conf", "ctc_conf", "input_size",
                 "token_type", "bpemodel", "token_list")


# options espnet rewrites in config.yaml after the start (the token list inlined, the
# distributed mode resolved): not changes of the user's
RESOLVED_AT_START = ("token_list", "multiprocessing_distributed", "distributed", "dist_rank",
                     "local_rank", "dist_world_size", "dist_master_addr", "dist_master_port",
                     "dist_init_method", "dist_launcher")


def _plain(value):
    """A config value as YAML would read it back (tuples as lists)."""
    return json.loads(json.dumps(value, default=str))


def _tokens(value):
    if isinstance(value, str) and os.path.isfile(value):
        with open(value, encoding="utf-8") as stream:
            return [line.rstrip() for line in stream]
    return _plain(value)


def keep_experiment_config(args: argparse.Namespace):
    """An output_dir that holds weights is never trained on with another model config.

    espnet rewrites ``<output_dir>/config.yaml`` at every start, so resuming with an
    edited config (a layer more) would leave config.yaml describing weights it did not
    write, and decoding would load them with a layer missing. Here a change of any
    option in MODEL_OPTIONS is refused, naming the options; other changes (epochs,
    learning rate) go ahead, and the previous config.yaml is kept as config.yaml.<n>.
    """
    if getattr(args, "collect_stats", False) or not args.output_dir:
        return
    output_dir = Path(args.output_dir)
    previous_path = output_dir / "config.yaml"
    weights = [p.name for p in output_dir.glob("*.pth")] if output_dir.is_dir() else []
    if not previous_path.is_file():
        return
    with open(previous_path, encoding="utf-8") as stream:
        previous = yaml.safe_load(stream) or {}
    changed = []
    for option in MODEL_OPTIONS:
        old, new = previous.get(option), getattr(args, option, None)
        if option == "token_list":
            old, new = _tokens(old), _tokens(new)
        if _plain(old) != _plain(new):
            changed.append(option)
    if changed and weights:
        raise ValueError(
            f"{output_dir} holds weights ({', '.join(sorted(weights)[:3])}) trained with "
            f"{previous_path}, and this config changes {', '.join(changed)}: train into a "
            "new directory (mtla.sh --tag <name>, or another --output_dir), or remove "
            f"{output_dir} to start it anew"
        )
    now = {key: _plain(value) for key, value in vars(args).items()}
    if any(_plain(previous.get(key)) != value for key, value in now.items()
           if key not in RESOLVED_AT_START):
        number = 1
        while (output_dir / f"config.yaml.{number}").exists():
            number += 1
        shutil.copy2(previous_path, output_dir / f"config.yaml.{number}")
        # a module logger: logging.info here, before espnet's basicConfig, would set up
        # the root logger at WARNING and silence the run's INFO lines (its epoch results)
        logging.getLogger(__name__).warning(
            f"{previous_path}: options changed since the last start; the previous config "
            f"kept as config.yaml.{number}")


def check_gpu_launch(args: argparse.Namespace):
    """Refuse launches that would put two processes on one GPU or ask for absent GPUs.

    ``--ngpu N`` with ``--multiprocessing_distributed true`` (our default) spawns N
    processes per node; a launcher that itself starts several processes per node
    (torchrun ``--nproc_per_node 2``) would multiply that, and with ``--ngpu 1`` espnet
    pins every such process to GPU 0.
    """
    processes_per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if args.multiprocessing_distributed and args.ngpu >= 1 and processes_per_node > 1:
        raise ValueError(
            f"--ngpu {args.ngpu} with --multiprocessing_distributed true, but the launcher "
            f"started {processes_per_node} processes on this node (LOCAL_WORLD_SIZE): "
            "start one process per node (torchrun --nproc_per_node 1 ... --ngpu "
            "<GPUs per node>), or one per GPU with --ngpu 1 --multiprocessing_distributed "
            "false"
        )
    visible = torch.cuda.device_count()
    if args.ngpu > visible:
        raise ValueError(
            f"--ngpu {args.ngpu}, but {visible} GPU(s) are visible to this process "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )


def fork_data_loader_workers():
    """Start data loader workers by fork in the per-GPU processes espnet spawns.

    ``--ngpu N`` runs each GPU's trainer in a process started by ``spawn``, whose default
    start method is then ``spawn`` too: every epoch's train and valid loaders would start
    their workers by re-importing espnet and this toolkit (seen on an H200 host: ~18 s of
    every 2-GPU validation of a 40-utterance set that takes 0.4 s on 1 GPU). Workers only
    read and preprocess data, never CUDA, so fork is safe, as in single-process training.
    """
    if sys.platform.startswith("linux") and multiprocessing.get_start_method() == "spawn":
        multiprocessing.set_start_method("fork", force=True)
