#!/usr/bin/env bash
# session 25, last call: GPU tests of the shared layouts and FlexAttention training path,
# then the training step before (session start, .gpu/old) and after, side by side (#20)
set -u
G=$OUT; start=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - start )) s" >> $G/progress.txt; }
bench/offline_env.sh .gpu/wheels > $G/env.log 2>&1 || { stamp "env failed"; exit 1; }
stamp "env ready"
PY=$PWD/tools/venv/bin/python
timeout 100 $PY -m pytest -q -x test/test_shared_layouts.py test/test_flex_training.py -p no:cacheprovider > $G/gpu_tests.txt 2>&1
stamp "tests rc=$?"
for which in after before; do
  dir=.; [ $which = before ] && dir=.gpu/old
  (cd $dir && timeout 70 $PY -m espnet2_mtla.bin.benchmark --sections train --variants mha mtla_s2 \
      --train_shapes 32x512 8x2048 4x4096 --repeats 10 --out $G/train_$which > $G/train_$which.log 2>&1)
  stamp "train $which rc=$?"
done
