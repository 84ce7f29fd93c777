#!/usr/bin/env bash
# session 29 call 1: #20 MLA's causal training attention: kernels, tests, long graphed steps
set -u
G=/tmp/g; mkdir -p $G/tests
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
[ -x tools/venv/bin/python ] || bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { stamp "env failed"; echo x > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
nvidia-smi --query-gpu=name,driver_version --format=csv > $G/gpu.txt
$PY -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >> $G/gpu.txt
git rev-parse HEAD > $G/commit.txt; git status --short >> $G/commit.txt
PYTHONPATH=. $PY bench/mla_attention_kernels.py --out $G/kernels > $G/kernels.log 2>&1; stamp "kernels rc=$?"
$PY -m pytest -q -ra test/test_flex_training.py > $G/tests/flex.log 2>&1; stamp "flex tests rc=$?"
$PY -m pytest -q -ra -m gpu test/test_compile_training.py test/test_shared_layouts.py > $G/tests/gpu_tests.log 2>&1; stamp "gpu tests rc=$?"
$PY bench/profile_train.py --shapes 1x16384 4x4096 --variants mha:graphs mla:graphs mla:dense:graphs \
   --repeats 20 --out $G/graphs_long > $G/graphs_long.log 2>&1; stamp "graphs long rc=$?"
$PY bench/profile_train.py --shapes 8x2048 16x1024 32x512 --variants mha:graphs mla:graphs mla:dense:graphs \
   --repeats 20 --out $G/graphs_short > $G/graphs_short.log 2>&1; stamp "graphs short rc=$?"
echo done > $G/DONE
