#!/usr/bin/env bash
# Detached master for the next device session (nvidia-h200-x2; carry [".gpu"]; started
# with setsid from the repository root; poll with .gpu/poll.sh). Everything under /tmp/g.
#  - CPU cores 0-27: mini_en_de's data with 7,000 pairs (stages 1-6), then its four
#    variants' training and decoding on both GPUs (#18);
#  - GPU 1 meanwhile: #22's before/after of the decode and beam sections (commit 80fefdf,
#    carried as .gpu/old80, against this tree; the same options, one process each, in
#    turn, twice), then #23's EOS-terminated beam and #24's generate section.
set -u
G=/tmp/g; mkdir -p $G/bench
start=$(date +%s)
. bench/gpu_recipe_env.sh .gpu > $G/env.log 2>&1 || { echo env failed > $G/DONE; exit 1; }
echo "env ready after $(( $(date +%s) - start )) s" >> $G/progress.txt
nvidia-smi > $G/nvidia-smi.txt
OPTS=(--attn_confs "mha mla mtla_s2 mtla_s4" --train_jobs 4 --nj 24 --inference_nj 1)
( taskset -c 0-27 bench/gpu_mini_recipes.sh .gpu $G/prep mini_en_de/st1 -- "${OPTS[@]}" --stop_stage 6
  echo "prep rc=$? at $(( $(date +%s) - start )) s" >> $G/progress.txt
  bench/gpu_mini_recipes.sh .gpu $G/train mini_en_de/st1 -- "${OPTS[@]}" --stage 7 --stop_stage 10
  echo "train rc=$? at $(( $(date +%s) - start )) s" >> $G/progress.txt ) &
recipe=$!
( export CUDA_VISIBLE_DEVICES=1
  PY=$PWD/tools/venv/bin/python
  B=(--sections decode beam --variants mha mla mtla_s2 mtla_s4 --compare_graphs)
  for round in 1 2; do
    (cd .gpu/old80 && PYTHONPATH=. taskset -c 28-31 $PY -m espnet2_mtla.bin.benchmark "${B[@]}" \
        --out $G/bench/before_$round > $G/bench/before_$round.log 2>&1)
    taskset -c 28-31 $PY -m espnet2_mtla.bin.benchmark "${B[@]}" --out $G/bench/after_$round \
        > $G/bench/after_$round.log 2>&1
    echo "bench round $round at $(( $(date +%s) - start )) s" >> $G/progress.txt
  done
  taskset -c 28-31 $PY -m espnet2_mtla.bin.benchmark --sections beam --eos_terminated \
      --variants mha mtla_s2 mtla_s4 --compare_graphs --beams 10 --utterances 128 --output_len 200 \
      --out $G/bench/eos > $G/bench/eos.log 2>&1
  taskset -c 28-31 $PY -m espnet2_mtla.bin.benchmark --sections generate --out $G/bench/generate \
      > $G/bench/generate.log 2>&1
  echo "bench done at $(( $(date +%s) - start )) s" >> $G/progress.txt ) &
bench=$!
wait $recipe $bench
echo done > $G/DONE
