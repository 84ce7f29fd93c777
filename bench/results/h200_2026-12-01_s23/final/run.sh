#!/usr/bin/env bash
# session 23, third machine (final code): GPU tests, the merge-update timing, generate()
# at the long shapes and 32 x 1024, memory at the peak.
set -u
G=/tmp/g; mkdir -p $G/bench $G/tests $G/memory
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s" >> $G/progress.txt; }
bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { echo env failed > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
nvidia-smi --query-gpu=name,driver_version --format=csv > $G/gpu.txt
$PY -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> $G/gpu.txt
$PY -m pytest -q -m gpu test/test_kernels.py test/test_attention_incremental.py test/test_hf.py \
    > $G/tests/gpu_tests.log 2>&1
$PY -m pytest -q test/test_cuda_graph.py -k "not interpreter" >> $G/tests/gpu_tests.log 2>&1
stamp "gpu tests rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 16x8000 4x32000 \
    --generate_subjects llama llama_static mtla_s1 mtla_s2 mtla_s4 \
    --prefill_chunk_size 2048 --out $G/bench/generate_long > $G/bench/generate_long.log 2>&1
stamp "bench generate long rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 32x1024 --new_tokens 256 \
    --generate_subjects llama llama_static mtla_s1 mtla_s2 mtla_s4 \
    --out $G/bench/generate_1k > $G/bench/generate_1k.log 2>&1
stamp "bench generate 32x1024 rc=$?"
for s in 1 2 4; do
  PYTHONPATH=. $PY bench/profile_generate.py --subject mtla_s$s --shape 16x8000 \
      > $G/memory/mtla_s${s}_16x8000.log 2>&1
done
stamp "memory profiles"
PYTHONPATH=. $PY bench/merge_update_speed.py > $G/bench/merge_update_speed.log 2>&1
stamp "merge update speed rc=$?"
echo done > $G/DONE
