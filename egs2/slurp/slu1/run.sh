#!/usr/bin/env bash
# SLURP spoken language understanding (set SLURP in db.sh); intents become whole tokens.
set -euo pipefail
./mtla.sh --task slu --train_set train --valid_set devel --test_sets test \
    --train_config conf/train.yaml --attn_confs "mha mla mtla_s2 mtla_s3 mtla_s4" \
    --token_type bpe --nbpe 1000 --ngpu 1 \
    --gpu_inference true --inference_nj 8 \
    --inference_config conf/decode.yaml "$@"
