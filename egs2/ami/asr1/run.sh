#!/usr/bin/env bash
# AMI individual-headset ASR (set AMI in db.sh). The paper's sweep by default.
set -euo pipefail
./mtla.sh --task asr --train_set train --valid_set dev --test_sets "dev eval" \
    --train_config conf/train.yaml --attn_confs "mha mla mtla_s2 mtla_s3 mtla_s4" \
    --token_type bpe --nbpe 500 --max_wav_duration 30 --ngpu 1 --gpu_inference true \
    --inference_nj 8 --inference_config conf/decode.yaml "$@"
