#!/usr/bin/env bash
# session 29 call 2: kernels with a static compile per shape; eager and compiled (no graphs) MLA
set -u
G=/tmp/g; mkdir -p $G/tests
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
[ -x tools/venv/bin/python ] || bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { stamp "env failed"; echo x > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
git rev-parse HEAD > $G/commit.txt; git status --short >> $G/commit.txt
PYTHONPATH=. $PY bench/mla_attention_kernels.py --out $G/kernels > $G/kernels.log 2>&1; stamp "kernels rc=$?"
$PY bench/profile_train.py --shapes 32x512 4x4096 1x16384 --variants mha mla mla:dense \
   --repeats 20 --out $G/eager > $G/eager.log 2>&1; stamp "eager rc=$?"
$PY bench/profile_train.py --shapes 32x512 8x2048 --variants mha:compile mla:compile mla:dense:compile \
   --repeats 20 --out $G/compile > $G/compile.log 2>&1; stamp "compile rc=$?"
echo done > $G/DONE
