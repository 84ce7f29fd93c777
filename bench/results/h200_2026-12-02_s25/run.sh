#!/usr/bin/env bash
# session 25: mini_en_de on synopsis pairs (mha, mtla_s2, mtla_s2_prefix_unmerged) and the LM
# probe's third seed (4,000 steps) and 8,000-step runs (seed 1), at once on one H200 (#18)
set -u
G=/tmp/g; mkdir -p $G/lm_seed3 $G/lm_8k $G/en_de
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { stamp "env failed"; echo x > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
nvidia-smi --query-gpu=name,driver_version --format=csv > $G/gpu.txt
$PY -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> $G/gpu.txt
echo "--st_source synopses --num_train 6000 --num_dev 300 --num_test 300" \
    > egs2/mini_en_de/st1/conf/local_data_opts_gpu.txt
( bench/gpu_mini_recipes.sh .gpu $G/en_de mini_en_de/st1 -- --attn_confs \
      "mha mtla_s2 mtla_s2_prefix_unmerged" --train_jobs 3 --nj 12 --inference_nj 1 \
      --train_args "--max_epoch 60" > $G/en_de/master.log 2>&1; stamp "en_de rc=$?" ) &
sleep 150   # (the data preparation takes the cores first)
P="env ESPNET2_MTLA_KERNELS=0 $PY bench/lm_probe.py --lists_dir .gpu"
( $P --steps 4000 --out $G/lm_seed3 --seeds 3 --jobs 2 --variants mha mtla_s2 \
      > $G/lm_seed3/probe.log 2>&1; stamp "lm seed3 rc=$?" ) &
( $P --steps 8000 --out $G/lm_8k --seeds 1 --jobs 2 --variants mha mtla_s2 \
      > $G/lm_8k/probe.log 2>&1; stamp "lm 8k rc=$?" ) &
wait
echo done > $G/DONE
