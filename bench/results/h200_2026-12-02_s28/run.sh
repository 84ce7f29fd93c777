#!/usr/bin/env bash
# session 28: #20 host side of eager steps; compiled (graphs) steps with Flex at every length
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
$PY bench/profile_train.py --shapes 32x512 8x2048 --variants mha mla mtla_s2 \
   --repeats 20 --host_top 40 --out $G/host > $G/host.log 2>&1; stamp "host profile rc=$?"
$PY bench/profile_train.py --shapes 32x512 16x1024 --variants mha:graphs mla:graphs \
   mtla_s2:graphs mtla_s3:graphs mtla_s4:graphs --repeats 20 --out $G/graphs_short > $G/graphs_short.log 2>&1
stamp "graphs short rc=$?"
$PY -m pytest -q -ra -m gpu test/test_compile_training.py test/test_flex_training.py \
   test/test_shared_layouts.py > $G/tests/gpu_tests.log 2>&1; stamp "gpu tests rc=$?"
$PY bench/profile_train.py --shapes 8x2048 4x4096 1x16384 --variants mha:graphs mla:graphs \
   mtla_s2:graphs mtla_s3:graphs mtla_s4:graphs --repeats 20 --out $G/graphs_long > $G/graphs_long.log 2>&1
stamp "graphs long rc=$?"
$PY bench/profile_train.py --shapes 32x512 --variants mha:compile mla:compile mtla_s2:compile \
   mtla_s2:dense:compile --repeats 20 --out $G/compile_short > $G/compile_short.log 2>&1
stamp "compile short rc=$?"
echo done > $G/DONE
