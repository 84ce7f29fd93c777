#!/usr/bin/env bash
# Detached master, session 21, second machine: the row-reorder fix's GPU tests; #24's
# generate() with the prefill timed apart; #20's 1 x 16k compiled shape.
set -u
G=/tmp/g; mkdir -p $G/bench $G/tests
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s" >> $G/progress.txt; }
bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { echo env failed > $G/DONE; exit 1; }
stamp "env ready"
nvidia-smi > $G/nvidia-smi.txt
PY=$PWD/tools/venv/bin/python
$PY -m pytest -q -ra -m gpu test/test_hf.py test/test_cuda_graph.py test/test_kernels.py > $G/tests/gpu_tests.log 2>&1
stamp "tests hf+cuda_graph+kernels rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 16x8000 4x32000 \
    --generate_subjects llama llama_static mtla_s1 mtla_s2 mtla_s4 \
    --prefill_chunk_size 2048 --out $G/bench/generate > $G/bench/generate.log 2>&1
stamp "bench generate rc=$?"
$PY bench/profile_train.py --shapes 1x16384 --variants mha:graphs mla:graphs \
    mtla_s2:flex:graphs mtla_s4:flex:graphs --out $G/bench/train_16k > $G/bench/train_16k.log 2>&1
stamp "profile_train 1x16384 rc=$?"
echo done > $G/DONE
