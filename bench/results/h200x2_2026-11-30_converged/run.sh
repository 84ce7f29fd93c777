#!/usr/bin/env bash
# Detached master (started by call 1 with setsid): the train benchmark on GPU 1 while the
# four mini recipes build their data (stages 1-6, CPU); then the recipes' stages 7-10 on
# both GPUs. Everything under /tmp/g; DONE marks the end.
set -u
G=/tmp/g; mkdir -p $G/bench $G/bench_flex0
start=$(date +%s)
. bench/gpu_recipe_env.sh .gpu > $G/env.log 2>&1 || { echo env failed > $G/DONE; exit 1; }
echo "env ready after $(( $(date +%s) - start )) s" >> $G/progress.txt
nvidia-smi > $G/nvidia-smi.txt
R="mini_en/asr1 mini_slu/slu1 mini_sum/sum1 mini_en_de/st1"
OPTS=(--attn_confs "mha mla mtla_s2 mtla_s4" --train_jobs 4 --nj 7 --inference_nj 1)
( taskset -c 0-27 nice -n 5 bench/gpu_mini_recipes.sh .gpu $G/prep $R -- "${OPTS[@]}" --stop_stage 6
  echo "prep rc=$? at $(( $(date +%s) - start )) s" >> $G/progress.txt ) &
prep=$!
( export CUDA_VISIBLE_DEVICES=1
  taskset -c 28-31 tools/venv/bin/python -m espnet2_mtla.bin.benchmark --sections train \
     --dtype bfloat16 --variants mha mla mtla_s2 mtla_s4 --compare_kernels --out $G/bench > $G/bench/train.log 2>&1
  echo "bench rc=$? at $(( $(date +%s) - start )) s" >> $G/progress.txt
  # the same below FLEX_MIN_LENGTH with FlexAttention forced (is 3,072 the right switch?)
  taskset -c 28-31 tools/venv/bin/python -c "
import sys, espnet2_mtla.attention.mtla as m
m.FLEX_MIN_LENGTH = 0
from espnet2_mtla.bin.benchmark import main
main(sys.argv[1:])" --sections train --dtype bfloat16 --variants mha mtla_s2 mtla_s4 --compare_kernels \
     --train_shapes 32x512 16x1024 8x2048 --out $G/bench_flex0 > $G/bench_flex0/train.log 2>&1
  echo "bench flex0 rc=$? at $(( $(date +%s) - start )) s" >> $G/progress.txt ) &
bench=$!
wait $prep $bench
bench/gpu_mini_recipes.sh .gpu $G/train $R -- "${OPTS[@]}" --stage 7 --stop_stage 10
echo "train rc=$? at $(( $(date +%s) - start )) s" >> $G/progress.txt
echo done > $G/DONE
