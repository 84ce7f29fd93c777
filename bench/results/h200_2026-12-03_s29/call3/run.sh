#!/usr/bin/env bash
# session 29 call 3: the compile rule for MLA's causal Flex: GPU tests; graphed 1x16384 check
set -u
G=/tmp/g; mkdir -p $G/tests
start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s ($(date -u +%T))" >> $G/progress.txt; }
[ -x tools/venv/bin/python ] || bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { stamp "env failed"; echo x > $G/DONE; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
git rev-parse HEAD > $G/commit.txt; git status --short >> $G/commit.txt
$PY -m pytest -q -ra test/test_flex_training.py > $G/tests/flex.log 2>&1; stamp "flex tests rc=$?"
$PY -m pytest -q -ra -m gpu test/test_compile_training.py > $G/tests/compile.log 2>&1; stamp "compile tests rc=$?"
$PY bench/profile_train.py --shapes 1x16384 --variants mha:graphs mla:graphs mla \
   --repeats 20 --out $G/check > $G/check.log 2>&1; stamp "check rc=$?"
echo done > $G/DONE
