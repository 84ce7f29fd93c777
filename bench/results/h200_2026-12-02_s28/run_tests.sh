#!/usr/bin/env bash
# after run28.sh: the GPU tests with the head-width guard
G=/tmp/g; PY=$PWD/tools/venv/bin/python
$PY -m pytest -q -ra test/test_compile_training.py test/test_flex_training.py \
   test/test_shared_layouts.py > $G/tests/gpu_tests_guard.log 2>&1
echo "gpu tests (guard) rc=$? at $(date -u +%T)" >> $G/progress.txt
cd $G && tar czf $OUT/g.tgz --exclude="*.pt" . ; tail -3 $G/tests/gpu_tests_guard.log
