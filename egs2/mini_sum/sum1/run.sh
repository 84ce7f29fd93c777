#!/usr/bin/env bash
# mini_sum: Debian package description -> its one-line synopsis (text only).
# Offline on CPU; options after ./run.sh go to mtla.sh.
set -euo pipefail
./mtla.sh --task summ --train_set train --valid_set dev --test_sets test \
    --local_data_opts "--num_train 5000 --num_dev 200 --num_test 200" \
    --train_config conf/train.yaml --conf_dir conf --attn_confs "mha mla mtla_s2" \
    --token_type bpe --nbpe 1000 --nj 2 --inference_nj 2 \
    --inference_config conf/decode.yaml "$@"
