#!/usr/bin/env bash
# Session 16, detached master on two H200s: mini_en_de (7,000 pairs) through its stages,
# five variants at once (GPU 0: mha, mtla_s2, mtla_s2_prefix_unmerged; GPU 1: mla, mtla_s4),
# while GPU 0 first runs the GPU tests of session 15's untested code; then, if time is left,
# the shared-prefix beam rows on the freed GPU 1.
set -u
G=/tmp/g; mkdir -p $G/tests $G/prep $G/bench
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
. bench/gpu_recipe_env.sh .gpu > $G/env.log 2>&1 || { stamp "env failed"; echo x > $G/DONE; exit 1; }
stamp "env ready"
nvidia-smi > $G/nvidia-smi.txt
git rev-parse HEAD > $G/commit.txt 2>/dev/null
PY=$PWD/tools/venv/bin/python
( bench/gpu_mini_recipes.sh .gpu $G/prep mini_en_de/st1 -- \
    --attn_confs "mha mla mtla_s2 mtla_s4 mtla_s2_prefix_unmerged" --train_jobs 5 --nj 24 \
    --inference_nj 1 > $G/prep/recipes.log 2>&1; stamp "recipes rc=$?" ) &
rec=$!
CUDA_VISIBLE_DEVICES=0 $PY -m pytest -q -ra test/test_cuda_graph.py test/test_kernels.py \
    test/test_flex_training.py test/test_benchmark.py test/test_rotary.py \
    test/test_compile_training.py > $G/tests/gpu_tests.log 2>&1
stamp "gpu tests rc=$?"
wait $rec
CUDA_VISIBLE_DEVICES=1 $PY -m espnet2_mtla.bin.benchmark --sections beam \
    --variants mla mtla_s2 mtla_s4 --compare_graphs --compare_shared_prefix \
    --out $G/bench/shared > $G/bench/shared.log 2>&1
stamp "bench shared rc=$?"
echo done > $G/DONE
