#!/usr/bin/env bash
# Session 17, detached master on two H200s (started with setsid from the repository root).
# GPU 0: GPU tests (CUDA graphs incl. the MHA/GQA shared step, kernels, HF incl. share_prefix)
#        -> #23 beam benchmarks with --compare_shared_prefix (default shapes, the issue's
#        128 x 10 x 200 fixed and EOS-terminated, 32 x 8 x 200 with a 2000-frame prefix)
#        -> #18 mini_sum: mha, mtla_s2, mtla_s2_prefix_unmerged, seeds 0 and 1 at once.
# GPU 1: #18 LM probe over BPE (5 variants at once) beside the data preparation of
#        multigpu_check (noise audio of mini_en's lengths) -> #20 variants part (alone).
set -u
G=/tmp/g; mkdir -p $G/tests $G/bench $G/lm $G/mgc $G/sum0 $G/sum1
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
. bench/gpu_recipe_env.sh .gpu > $G/env.log 2>&1 || { stamp "env failed"; echo x > $G/DONE; exit 1; }
stamp "env ready"
nvidia-smi > $G/nvidia-smi.txt
git rev-parse HEAD > $G/commit.txt 2>/dev/null
PY=$PWD/tools/venv/bin/python
$PY -c "import torch, transformers, espnet; print(torch.__version__, transformers.__version__, espnet.__version__)" > $G/versions.txt 2>&1

gpu1() {
  ( CUDA_VISIBLE_DEVICES=1 ESPNET2_MTLA_KERNELS=0 taskset -c 16-23 $PY bench/lm_probe.py \
      --lists_dir .gpu --out $G/lm --tokens bpe --vocab 2000 --steps 4000 --jobs 5 \
      --variants mha mla mtla_s2 mtla_s4 mtla_s2+rank=256 > $G/lm/probe.log 2>&1
    stamp "lm probe rc=$?" ) &
  local lm=$!
  taskset -c 24-31 $PY .gpu/synth_audio.py .gpu/en_lengths /tmp/en_data > $G/mgc/synth.log 2>&1
  stamp "synth rc=$?"
  CUDA_VISIBLE_DEVICES=1 taskset -c 24-31 bench/multigpu_check.sh /tmp/en_data $G/mgc/prep prep > $G/mgc/prep.log 2>&1
  stamp "mgc prep rc=$?"
  wait $lm
  CUDA_VISIBLE_DEVICES=1 SPEED_BATCHES="40 200 400" taskset -c 16-31 bench/multigpu_check.sh \
      /tmp/en_data $G/mgc/variants variants > $G/mgc/variants.log 2>&1
  stamp "mgc variants rc=$?"
}
gpu1 &
g1=$!

( taskset -c 0-7 bench/gpu_mini_recipes.sh .gpu $G/sum0 mini_sum/sum1 -- --stop_stage 6 \
    --attn_confs "mha mtla_s2 mtla_s2_prefix_unmerged" --nj 8 > $G/sum0/prep.log 2>&1
  stamp "sum prep rc=$?" ) &
prep=$!
export CUDA_VISIBLE_DEVICES=0
timeout 480 taskset -c 8-15 $PY -m pytest -q -ra test/test_cuda_graph.py test/test_kernels.py \
    test/test_hf.py > $G/tests/gpu_tests.log 2>&1
stamp "gpu tests rc=$?"
BENCH="$PY -m espnet2_mtla.bin.benchmark --sections beam --compare_graphs --compare_shared_prefix"
$BENCH --variants mha mla mtla_s2 mtla_s4 --out $G/bench/default > $G/bench/default.log 2>&1
stamp "bench default rc=$?"
$BENCH --variants mha mtla_s2 mtla_s4 --beams 10 --utterances 128 --output_len 200 \
    --out $G/bench/issue > $G/bench/issue.log 2>&1
stamp "bench issue rc=$?"
$BENCH --variants mha mtla_s2 mtla_s4 --beams 10 --utterances 128 --output_len 200 \
    --eos_terminated --out $G/bench/eos > $G/bench/eos.log 2>&1
stamp "bench eos rc=$?"
$BENCH --variants mha mla mtla_s2 mtla_s4 --beams 8 --utterances 32 --output_len 200 \
    --prefix_len 2000 --out $G/bench/long > $G/bench/long.log 2>&1
stamp "bench long rc=$?"
wait $prep
OPTS=(--attn_confs "mha mtla_s2 mtla_s2_prefix_unmerged" --train_jobs 3 --nj 8 --inference_nj 1 --stage 7)
( taskset -c 0-7 bench/gpu_mini_recipes.sh .gpu $G/sum0 mini_sum/sum1 -- "${OPTS[@]}" \
    > $G/sum0/train.log 2>&1; stamp "sum seed0 rc=$?" ) &
s0=$!
sleep 20
taskset -c 8-15 bench/gpu_mini_recipes.sh .gpu $G/sum1 mini_sum/sum1 -- "${OPTS[@]}" \
    --tag seed1 --train_args "--seed 1" > $G/sum1/train.log 2>&1
stamp "sum seed1 rc=$?"
wait $s0
wait $g1
echo done > $G/DONE
# (a third call, on GPU 0 once mini_sum had finished, while the variants part still ran
# on GPU 1:)
#   CUDA_VISIBLE_DEVICES=0 taskset -c 0-7 tools/venv/bin/python -m espnet2_mtla.bin.benchmark \
#       --sections train --train_compile --variants mha mla mtla_s2 mtla_s4 \
#       --train_shapes 32x512 8x2048 --out /tmp/g/bench/train
