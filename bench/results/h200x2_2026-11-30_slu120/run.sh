#!/usr/bin/env bash
# Detached master, session 13 (started with setsid from the repository root): mini_slu
# (max_epoch 120) and mini_en_de (7,000 pairs) through stages 1-10 for the four variants,
# and beside them one ablation: mini_slu MTLA s=2 with half the batch (twice the steps
# per epoch). Everything under /tmp/g; DONE marks the end.
set -u
G=/tmp/g; mkdir -p $G/abl
start=$(date +%s)
. bench/gpu_recipe_env.sh .gpu > $G/env.log 2>&1 || { echo env failed > $G/DONE; exit 1; }
echo "env ready after $(( $(date +%s) - start )) s" >> $G/progress.txt
nvidia-smi > $G/nvidia-smi.txt
R="mini_slu/slu1 mini_en_de/st1"
OPTS=(--attn_confs "mha mla mtla_s2 mtla_s4" --train_jobs 4 --nj 8 --inference_nj 1)
bench/gpu_mini_recipes.sh .gpu $G/prep $R -- "${OPTS[@]}" --stop_stage 6
echo "prep rc=$? at $(( $(date +%s) - start )) s" >> $G/progress.txt
( cd egs2/mini_slu/slu1 && CUDA_VISIBLE_DEVICES=1 ./run.sh --ngpu 1 --gpu_inference true \
    --train_config conf/train_gpu.yaml --expdir exp_gpu --results RESULTS_gpu_bb1m.md \
    --tag bb1m --attn_confs mtla_s2 --train_args "--batch_bins 1000000" --inference_nj 1 \
    --stage 7 --stop_stage 10 > $G/abl/run.log 2>&1
  echo "ablation rc=$? at $(( $(date +%s) - start )) s" >> $G/progress.txt
  cp RESULTS_gpu_bb1m.* exp_gpu/bb1m_mtla_s2/train.log $G/abl/ 2>/dev/null ) &
abl=$!
bench/gpu_mini_recipes.sh .gpu $G/train $R -- "${OPTS[@]}" --stage 7 --stop_stage 10
echo "train rc=$? at $(( $(date +%s) - start )) s" >> $G/progress.txt
wait $abl
echo done > $G/DONE
