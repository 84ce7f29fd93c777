#!/usr/bin/env bash
# mini_slu: spoken home-assistant commands -> "intent transcript" (SLURP-style labels;
# mtla.sh makes each intent one BPE token).
# Offline on CPU; options after ./run.sh go to mtla.sh.
set -euo pipefail
./mtla.sh --task slu --train_set train --valid_set dev --test_sets test \
    --local_data_opts "--num_train 3000 --num_dev 200 --num_test 200" \
    --train_config conf/train.yaml --conf_dir conf --attn_confs "mha mla mtla_s2" \
    --token_type bpe --nbpe 200 --nj 2 --inference_nj 2 \
    --inference_config conf/decode.yaml "$@"
