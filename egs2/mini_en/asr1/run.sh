#!/usr/bin/env bash
# mini_en: English ASR on synthetic speech (espeak-ng) of Debian package descriptions.
# Runs offline on CPU; `make demo` at the top of the repository runs it: mha and MTLA s=2
# merging the text only (mtla_s2_prefix_unmerged, the setting README recommends over a
# speech prefix) trained at once (one CPU core each); the other variants by option, e.g.
# ./run.sh --stage 7 --attn_confs "mla mtla_s2 mtla_s4". Options after ./run.sh go to mtla.sh.
set -euo pipefail
./mtla.sh --task asr --train_set train --valid_set dev --test_sets test \
    --local_data_opts "--num_train 4000 --num_dev 150 --num_test 200" \
    --train_config conf/train.yaml --conf_dir conf --attn_confs "mha mtla_s2_prefix_unmerged" --train_jobs 2 \
    --token_type char --nj 2 --inference_nj 2 \
    --inference_config conf/decode.yaml "$@"
