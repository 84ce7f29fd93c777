#!/usr/bin/env bash
# session 26: mini_en_de on synopsis pairs to the plateau (mha, mtla_s2,
# mtla_s2_prefix_unmerged), alone on one H200 but for the GPU tests run niced beside it (#18, #20)
set -u
G=/tmp/g; mkdir -p $G/en_de $G/tests
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { stamp "env failed"; echo x > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
nvidia-smi --query-gpu=name,driver_version --format=csv > $G/gpu.txt
$PY -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> $G/gpu.txt
git rev-parse HEAD > $G/commit.txt 2>/dev/null
echo "--st_source synopses --num_train 6000 --num_dev 300 --num_test 300" \
    > egs2/mini_en_de/st1/conf/local_data_opts_gpu.txt
( bench/gpu_mini_recipes.sh .gpu $G/en_de mini_en_de/st1 -- --attn_confs \
      "mha mtla_s2 mtla_s2_prefix_unmerged" --train_jobs 3 --nj 12 --inference_nj 1 \
      --train_args "--max_epoch 50" > $G/en_de/master.log 2>&1; stamp "en_de rc=$?" ) &
sleep 240
nice -n 19 $PY -m pytest -q -ra -x test/test_shared_layouts.py test/test_flex_training.py \
    > $G/tests/gpu_tests.log 2>&1
stamp "gpu tests rc=$?"
wait
echo done > $G/DONE
