#!/usr/bin/env python3
"""Train a decoder-only model: the ESPnet2 task's main (config YAML + command line).

    python -m espnet2_mtla.bin.train --config conf/train.yaml \
        --train_data_path_and_name_and_type dump/raw/train/wav.scp,speech,sound \
        --train_data_path_and_name_and_type dump/raw/train/text,text,text \
        --train_shape_file exp/stats/train/speech_shape ... --output_dir exp/model

Multi-GPU: ``--ngpu N`` on one node (one process per GPU, espnet's DDP; this toolkit
defaults ``--multiprocessing_distributed`` to true), one launcher per node across nodes
(torchrun ``--nproc_per_node 1``, env:// init; WORLD_SIZE counts nodes), or one process
per GPU from the launcher with ``--ngpu 1 --multiprocessing_distributed false``;
``--dist_backend gloo --ngpu 0`` runs DDP on CPUs.
"""

from espnet2_mtla.tasks.decoder_only import DecoderOnlyTask


def get_parser():
    return DecoderOnlyTask.get_parser()


def main(cmd=None):
    DecoderOnlyTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
