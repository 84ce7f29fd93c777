#!/usr/bin/env bash
# Detached master, session 15 (one H200; started with setsid from the repository root;
# carry .gpu; poll with .gpu/poll.sh). Everything under /tmp/g; DONE marks the end.
#  1. GPU tests (kernels, CUDA graphs incl. the shared-prefix step, flex training, the
#     benchmark's GPU paths, rotary) beside mini_slu's data preparation (stages 1-6, CPU);
#  2. #18: mini_slu MTLA s=2 with the prefix unmerged (decoder_conf merge_prefix false),
#     stages 7-10, beside the merged run of bench/results/h200x2_2026-11-30_slu120 (the
#     same config and seed otherwise);
#  3. #22: the benchmark's decode and beam sections, 80fefdf (.gpu/old80) vs this tree,
#     one process each, alone on the GPU; then #23's shared-prefix beam rows and the
#     EOS-terminated beam, then #24's generate section (transformers 5.23 wheels).
set -u
G=/tmp/g; mkdir -p $G/bench $G/tests
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s" >> $G/progress.txt; }
. bench/gpu_recipe_env.sh .gpu > $G/env.log 2>&1 || { echo env failed > $G/DONE; exit 1; }
stamp "env ready"
nvidia-smi > $G/nvidia-smi.txt
PY=$PWD/tools/venv/bin/python
$PY -c "import torch, transformers, espnet; print(torch.__version__, transformers.__version__, espnet.__version__)" > $G/versions.txt 2>&1
OPTS=(--attn_confs mtla_s2_prefix_unmerged --train_jobs 1 --nj 8 --inference_nj 1)
( taskset -c 0-9 bench/gpu_mini_recipes.sh .gpu $G/prep mini_slu/slu1 -- "${OPTS[@]}" --stop_stage 6
  stamp "prep rc=$?" ) &
prep=$!
timeout 420 taskset -c 10-15 $PY -m pytest -q -ra test/test_kernels.py test/test_cuda_graph.py \
    test/test_flex_training.py test/test_benchmark.py test/test_rotary.py \
    > $G/tests/gpu_tests.log 2>&1
stamp "gpu tests rc=$?"
wait $prep
bench/gpu_mini_recipes.sh .gpu $G/train mini_slu/slu1 -- "${OPTS[@]}" --stage 7 --stop_stage 10
stamp "train rc=$?"
B=(--sections decode beam --variants mha mla mtla_s2 mtla_s4 --compare_graphs)
(cd .gpu/old80 && PYTHONPATH=. $PY -m espnet2_mtla.bin.benchmark "${B[@]}" \
    --out $G/bench/before > $G/bench/before.log 2>&1)
stamp "bench before rc=$?"
$PY -m espnet2_mtla.bin.benchmark "${B[@]}" --out $G/bench/after > $G/bench/after.log 2>&1
stamp "bench after rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections beam --variants mla mtla_s2 mtla_s4 \
    --compare_shared_prefix --out $G/bench/shared > $G/bench/shared.log 2>&1
stamp "bench shared rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections beam --eos_terminated \
    --variants mha mtla_s2 mtla_s4 --compare_graphs --beams 10 --utterances 128 --output_len 200 \
    --out $G/bench/eos > $G/bench/eos.log 2>&1
stamp "bench eos rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections generate --out $G/bench/generate \
    > $G/bench/generate.log 2>&1
stamp "bench generate rc=$?"
echo done > $G/DONE
