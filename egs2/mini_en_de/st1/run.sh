#!/usr/bin/env bash
# mini_en_de: English speech (espeak-ng) -> German text, from the German gettext catalogs
# of Debian packages. Offline on CPU; options after ./run.sh go to mtla.sh.
set -euo pipefail
./mtla.sh --task st --train_set train --valid_set dev --test_sets test \
    --local_data_opts "--num_train 2000 --num_dev 150 --num_test 150" \
    --train_config conf/train.yaml --conf_dir conf --attn_confs "mha mla mtla_s2" \
    --token_type bpe --nbpe 400 --nj 2 --inference_nj 2 \
    --inference_config conf/decode.yaml "$@"
