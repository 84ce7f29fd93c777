#!/usr/bin/env bash
# Detached master, session 21 (one H200): GPU tests of the HF graphed decode step and of
# the reduce-overhead training path; #24's generate() benchmark; #20's long compiled shapes.
set -u
G=/tmp/g; mkdir -p $G/bench $G/tests
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s" >> $G/progress.txt; }
bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { echo env failed > $G/DONE; exit 1; }
stamp "env ready"
nvidia-smi > $G/nvidia-smi.txt
PY=$PWD/tools/venv/bin/python
$PY -m pytest -q -ra -m gpu test/test_hf.py test/test_cuda_graph.py > $G/tests/hf_graphs.log 2>&1
stamp "tests hf+cuda_graph rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 16x8000 \
    --prefill_chunk_size 2048 --out $G/bench/gen16k > $G/bench/gen16k.log 2>&1
stamp "bench generate 16x8000 rc=$?"
$PY -m pytest -q -ra -m gpu test/test_compile_training.py > $G/tests/compile_training.log 2>&1
stamp "tests compile_training rc=$?"
$PY -m espnet2_mtla.bin.benchmark --sections generate --generate_shapes 4x32000 32x1024 \
    --prefill_chunk_size 2048 --out $G/bench/gen32k > $G/bench/gen32k.log 2>&1
stamp "bench generate 4x32000 32x1024 rc=$?"
$PY bench/profile_train.py --shapes 8x2048 4x4096 --variants mha:graphs mla:graphs \
    mtla_s2:flex:graphs mtla_s4:flex:graphs --out $G/bench/train_graphs > $G/bench/train_graphs.log 2>&1
stamp "profile_train graphs rc=$?"
echo done > $G/DONE
