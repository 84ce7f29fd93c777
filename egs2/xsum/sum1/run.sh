#!/usr/bin/env bash
# XSum summarisation (set XSUM in db.sh): document -> one-sentence summary, text only.
set -euo pipefail
./mtla.sh --task summ --train_set train --valid_set validation --test_sets test \
    --train_config conf/train.yaml --attn_confs "mha mla mtla_s2 mtla_s3 mtla_s4" \
    --token_type bpe --nbpe 16000 --ngpu 1 --gpu_inference true --inference_nj 8 \
    --inference_config conf/decode.yaml "$@"
